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

{# Filter a model to the partition window passed as vars, or keep everything. #}
{% macro in_month_window(column) -%}
    {%- if var('min_month', '') != '' -%}
        {{ column }} >= cast('{{ var("min_month") }}' as date) and {{ column }} < cast('{{ var("max_month") }}' as date)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
