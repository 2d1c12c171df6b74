{# Absolute or dbt-relative location of the Parquet lake, from the same variable as Dagster's. #}
{% macro lake_root() -%}
    {{ env_var('PERMAFROST_LAKE_ROOT', '../data') }}
{%- endmacro %}

{#
  Materialization `lake_parquet`: the model's rows as Parquet in the lake,
  `<lake>/marts/<model>/<col>=<value>/.../*.parquet` (hive partitions on the config's
  `partition_by` columns, in order), and in the warehouse a view over those files, its columns in
  the model's order.

  All or nothing, as the lake's other writes: DuckDB writes the files into a fresh temporary
  folder beside the target (`.<model>.<host>-<pid>.<uuid>.tmp`, which no `*.parquet` glob reads),
  and only once every file is written is that folder renamed onto the target (the old one renamed
  aside, then removed). The file system work is done by the functions the profile's plugin
  registers (dagster_project/lake/dbt_plugin.py). A model with no rows (grid mode's marts on the
  band demo) leaves an empty folder and a view of its typed columns with no row.

  A run with a month window (a monthly partition run, calendar.sql: run_window) on a model whose
  folder already holds this layout writes only the partitions of the window: the model selects
  the rows of the window's years (`where {{ lake_window_years('month') }}`, the last partition
  column being the year) and only those partition folders are replaced, together; the others are
  not touched, so a new month costs the same whatever the history's length. Without a window, or
  on a first run, the whole folder is written.
  Config: `partition_by` (required, a list), `order_by` (rows within each file, optional).
#}
{% macro lake_location(relation) -%}
    {{ lake_root() ~ '/marts/' ~ relation.identifier }}
{%- endmacro %}

{# Whether this run of a `lake_parquet` model writes only its window's partitions (see above). #}
{% macro lake_parquet_partial() -%}
    {%- set start, end = run_window() -%}
    {%- if start == '' or not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set depth = config.require('partition_by') | length -%}
    {%- set held = run_query("select lake_partitions_at('" ~ lake_location(this) ~ "', " ~ depth ~ ")") -%}
    {{ return(held.columns[0].values()[0]) }}
{%- endmacro %}

{#
  In a `lake_parquet` model: the rows of the run window's years when the run writes only its
  window's partitions (`lake_parquet_partial`), every row otherwise.
#}
{% macro lake_window_years(column) -%}
    {%- if lake_parquet_partial() -%}
        {%- set start, end = run_window() -%}
        {%- set last_year = (end[:4] | int) - (1 if end[5:7] == '01' else 0) -%}
        year({{ column }}) between {{ start[:4] | int }} and {{ last_year }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{% materialization lake_parquet, adapter='duckdb' %}
    {%- set partition_by = config.require('partition_by') -%}
    {%- set order_by = config.get('order_by') -%}
    {%- set location = lake_location(this) -%}
    {%- set partial = lake_parquet_partial() -%}
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
            to '{{ temporary }}' (format parquet, partition_by ({{ partition_by | join(', ') }}), overwrite_or_ignore true)
        {%- endcall %}
    {% endif %}
    {% if partial %}
        {%- set replaced = run_query("select lake_replace_partitions('" ~ temporary ~ "', '" ~ location ~ "', " ~ (partition_by | length) ~ ")").columns[0].values()[0] -%}
        {{ log(this.identifier ~ ': ' ~ replaced ~ ' partition folder(s) of the run window rewritten, the others kept', info=true) }}
    {% else %}
        {%- do run_query("select lake_replace_folder('" ~ temporary ~ "', '" ~ location ~ "')") -%}
    {% endif %}

    {% if existing_relation is not none and existing_relation.type != 'view' %}
        {{ drop_relation_if_exists(existing_relation) }}
    {% endif %}
    {% call statement('main') -%}
        create or replace view {{ target_relation }} as
        {%- if n_rows > 0 or partial %}
        select {% for column in columns %}cast({{ adapter.quote(column.name) }} as {{ column.data_type }}) as {{ adapter.quote(column.name) }}{{ ', ' if not loop.last }}{% endfor %}
        from read_parquet('{{ location }}/{% for _ in partition_by %}*/{% endfor %}*.parquet', hive_partitioning = true)
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
