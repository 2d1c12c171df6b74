{# Fails on every month (within `group_by`) that does not hold exactly `n_bands` bands. #}
{% test bands_per_month(model, group_by=['month'], n_bands=6) %}
select {{ group_by | join(', ') }}, count(distinct band) as n_bands
from {{ model }}
group by {{ group_by | join(', ') }}
having count(distinct band) != {{ n_bands }}
{% endtest %}
