{# Absolute or dbt-relative location of the Parquet lake, from the same variable as Dagster's. #}
{% macro lake_root() -%}
    {{ env_var('PERMAFROST_LAKE_ROOT', '../data') }}
{%- endmacro %}

{#
  Materialization `lake_parquet`: the model's rows as Parquet in the lake,
  `<lake>/marts/<model>/<partition_column>=<value>/*.parquet` (hive partitions), and in the
  warehouse a view over those files, its columns in the model's order.

  All or nothing, as the lake's other writes: DuckDB writes the files into a fresh temporary
  folder beside the target (`.<model>.<host>-<pid>.<uuid>.tmp`, which no `*.parquet` glob reads),
  and only once every file is written is that folder renamed onto the target (the old one renamed
  aside, then removed). The file system work is done by the functions the profile's plugin
  registers (dagster_project/lake/dbt_plugin.py). A model with no rows (grid mode's marts on the
  band demo) leaves an empty folder and a view of its typed columns with no row.
  Config: `partition_column` (required), `order_by` (rows within each file, optional).
#}
{% materialization lake_parquet, adapter='duckdb' %}
    {%- set partition_column = config.require('partition_column') -%}
    {%- set order_by = config.get('order_by') -%}
    {%- set location = lake_root() ~ '/marts/' ~ this.identifier -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set rows_relation = make_intermediate_relation(this.incorporate(type='table'), suffix='__dbt_rows') -%}
    {{ drop_relation_if_exists(load_cached_relation(rows_relation)) }}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% call statement('rows') -%}
        {{ create_table_as(False, rows_relation, sql) }}
    {%- endcall %}
    {%- set columns = adapter.get_columns_in_relation(rows_relation) -%}
    {%- set n_rows = run_query('select count(*) from ' ~ rows_relation).columns[0].values()[0] -%}

    {%- set temporary = run_query("select lake_temporary_folder('" ~ location ~ "')").columns[0].values()[0] -%}
    {% if n_rows > 0 %}
        {% call statement('write_files') -%}
            copy (select * from {{ rows_relation }}{% if order_by %} order by {{ order_by }}{% endif %})
            to '{{ temporary }}' (format parquet, partition_by ({{ partition_column }}), overwrite_or_ignore true)
        {%- endcall %}
    {% endif %}
    {%- do run_query("select lake_replace_folder('" ~ temporary ~ "', '" ~ location ~ "')") -%}

    {% if existing_relation is not none and existing_relation.type != 'view' %}
        {{ drop_relation_if_exists(existing_relation) }}
    {% endif %}
    {% call statement('main') -%}
        create or replace view {{ target_relation }} as
        {%- if n_rows > 0 %}
        select {% for column in columns %}cast({{ adapter.quote(column.name) }} as {{ column.data_type }}) as {{ adapter.quote(column.name) }}{{ ', ' if not loop.last }}{% endfor %}
        from read_parquet('{{ location }}/*/*.parquet', hive_partitioning = true)
        {%- else %}
        select {% for column in columns %}cast(null as {{ column.data_type }}) as {{ adapter.quote(column.name) }}{{ ', ' if not loop.last }}{% endfor %}
        where false
        {%- endif %}
    {%- endcall %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ drop_relation_if_exists(rows_relation) }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#
  A test's `where` config `run_window:<column>` keeps the rows whose <column> is in the run's
  month window (calendar.sql: in_month_window), everything on a plain `dbt build`. The YAML can
  only render vars and env vars when dbt parses it, which would bake one month into the
  manifest; this is rendered when the test runs. So a monthly partition run tests its own
  months, and its cost does not grow with the history; on a `raw_staging_view` model it reads
  the view of the window's files (macros/staging.sql). Any other `where` works as dbt's own.
#}
{% macro duckdb__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where and where.startswith('run_window:') -%}
        {%- set where = in_month_window(where.split(':', 1)[1]) -%}
        {#- a staging view over raw files: its view of the window's files only (macros/staging.sql) -#}
        {%- set relation = staged_in_run_window(relation) -%}
    {%- endif -%}
    {%- if where and where != 'true' -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
