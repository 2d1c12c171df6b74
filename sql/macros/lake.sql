{# Absolute or dbt-relative location of the Parquet lake, from the same variable as Dagster's. #}
{% macro lake_root() -%}
    {{ env_var('PERMAFROST_LAKE_ROOT', '../data') }}
{%- endmacro %}
