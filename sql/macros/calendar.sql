{#
  Days in the month starting at `month_start` (a DATE) in a CF calendar named by the SQL
  expression `calendar`. CMIP5 models use noleap/365_day, all_leap/366_day or 360_day; the
  reanalysis and 'standard'/'gregorian'/'proleptic_gregorian' use the real Gregorian months.
  julian: every fourth year is a leap year, centuries included.
#}
{% macro days_in_month(calendar, month_start) -%}
    case
        when {{ calendar }} in ('noleap', '365_day')
            then case month({{ month_start }}) when 2 then 28 when 4 then 30 when 6 then 30 when 9 then 30 when 11 then 30 else 31 end
        when {{ calendar }} in ('all_leap', '366_day')
            then case month({{ month_start }}) when 2 then 29 when 4 then 30 when 6 then 30 when 9 then 30 when 11 then 30 else 31 end
        when {{ calendar }} = '360_day' then 30
        when {{ calendar }} = 'julian'
            then case month({{ month_start }})
                when 2 then case when year({{ month_start }}) % 4 = 0 then 29 else 28 end
                when 4 then 30 when 6 then 30 when 9 then 30 when 11 then 30 else 31 end
        when {{ calendar }} in ('standard', 'gregorian', 'proleptic_gregorian')
            then day(last_day({{ month_start }}))
    end
{%- endmacro %}

{% macro seconds_in_month(calendar, month_start) -%}
    (86400.0 * {{ days_in_month(calendar, month_start) }})
{%- endmacro %}

{#
  The run's month window [start, end) as YYYY-MM-DD strings, or ('', '') for the whole table.
  Dagster passes it as environment variables (PERMAFROST_RUN_MIN_MONTH/MAX_MONTH): unlike
  --vars, a changed value does not make dbt parse the whole project again. On the command
  line, --vars '{"min_month": ..., "max_month": ...}' does the same.
#}
{% macro run_window() -%}
    {%- set start = env_var('PERMAFROST_RUN_MIN_MONTH', '') or var('min_month', '') -%}
    {%- set end = env_var('PERMAFROST_RUN_MAX_MONTH', '') or var('max_month', '') -%}
    {{ return((start, end)) }}
{%- endmacro %}

{# Filter a model to the run's month window, or keep everything. #}
{% macro in_month_window(column) -%}
    {%- set start, end = run_window() -%}
    {%- if start != '' -%}
        {{ column }} >= cast('{{ start }}' as date) and {{ column }} < cast('{{ end }}' as date)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
