{#
  Fails on every month (within `group_by`) that does not hold exactly `n_bands` bands, or,
  with `bands_of_units`, as many bands as the spatial units stand for (the distinct
  `nearest_band` of macros/units.sql: six for bands, those near some basin for basins).
#}
{% test bands_per_month(model, group_by=['month'], n_bands=6, bands_of_units=false) %}
{%- set expected = '(select count(distinct nearest_band) from (' ~ spatial_units() ~ '))' if bands_of_units
    else n_bands %}
select
    {{ group_by | join(', ') }},
    count(distinct band) as n_bands,
    string_agg(distinct cast(band as varchar), ', ') as bands
from {{ model }}
group by {{ group_by | join(', ') }}
having count(distinct band) != {{ expected }}
{% endtest %}
