{#
  Fails on every value of `columns` that is missing or outside its canonical range
  (var('canonical_ranges'), by column name or by `ranges[column]`), one row per offending
  value: the variable, its value and the model's key columns (scenario, unit, band, month, ...).
  A column null on every row is a variable the source does not have (absent): accepted. A
  column null on some rows only is a hole: each null row fails.
  The model is read once (a materialized CTE): a staging view re-read per column would read
  every raw file once per column.
#}
{% test values_in_canonical_range(model, columns, ranges={}) %}
{%- if model is string %}
    {#- a `where` config makes the model a filtered subquery (macros/lake.sql), not a relation #}
    {%- set present = run_query('select column_name from (describe select * from ' ~ model ~ ')').columns[0].values() | list
        if execute else [] %}
{%- else %}
    {%- set present = adapter.get_columns_in_relation(model) | map(attribute='name') | list %}
{%- endif %}
{%- set keys = [] %}
{%- for key in ['scenario', 'experiment', 'unit', 'band', 'month', 'calendar_month', 'property', 'layer'] %}
    {%- if key in present %}{% do keys.append(key) %}{% endif %}
{%- endfor %}
with model_rows as materialized (
    select * from {{ model }}
),

non_null_values as (
    select
    {%- for column in columns %}
        count({{ column }}) as {{ column }}{{ ',' if not loop.last }}
    {%- endfor %}
    from model_rows
)

{% for column in columns %}
    {%- set bounds = var('canonical_ranges')[ranges.get(column, column)] %}
select
    {%- for key in keys %}
    {{ key }},
    {%- endfor %}
    '{{ column }}' as variable,
    cast({{ column }} as double) as value,
    {{ bounds[0] }} as lowest_allowed,
    {{ bounds[1] }} as highest_allowed
from model_rows
where ({{ column }} is null and (select {{ column }} from non_null_values) > 0)
    or {{ column }} < {{ bounds[0] }} or {{ column }} > {{ bounds[1] }}
    {%- if not loop.last %}
union all
    {%- endif %}
{%- endfor %}
{% endtest %}
