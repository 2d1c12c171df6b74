{#
  Fails on every month and unit of the spatial units table (macros/units.sql) that does not
  have exactly one row (`n_rows` 0 or more than one), and on every unit with rows that the
  table does not know (`known_unit` false). The months are those of the model; with
  `in_run_window`, a partition run (vars min_month, max_month) checks every month of its
  window, empty months included, so a unit-month missing from the source is caught there.
#}
{% test units_per_month(model, in_run_window=false) %}
{%- set start, end = run_window() %}
{%- set window = in_run_window and start != '' %}
with units as (
    {{ spatial_units() }}
),

counted as materialized (
    -- the model read once: a staging view reads every raw file
    select unit, month, count(*) as n_rows
    from {{ model }}
    group by unit, month
),

months as (
    {%- if window %}
    select cast(month_start as date) as month
    from range(cast('{{ start }}' as date), cast('{{ end }}' as date), interval 1 month) as months (month_start)
    {%- else %}
    select distinct month from counted
    {%- endif %}
)

select months.month, units.unit, units.band, coalesce(counted.n_rows, 0) as n_rows, true as known_unit
from months
cross join units
left join counted on units.unit = counted.unit and months.month = counted.month
where coalesce(counted.n_rows, 0) != 1
union all
select month, unit, null as band, n_rows, false as known_unit
from counted
where unit not in (select unit from units) and month in (select month from months)
{% endtest %}
