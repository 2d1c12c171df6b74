{#
  Materialization `raw_staging_view`, for a staging model over a one-file-per-month raw source
  (config `raw_source`: [source_name, table_name]): the view over every landed file, as dbt's
  `view`, and in a partition run (a month window set) beside it the view
  `<model>__run_window`, the same SQL over the window's files only (macros/raw.sql:
  raw_in_run_window). The models downstream (staged_in_run_window) and the model's windowed
  tests (get_where_subquery) read that one, so a partition run never opens the other months'
  files and its cost does not grow with the history.
  The full view's definition is fingerprinted (md5 of its SQL, kept as the view's comment): a
  partition run defines it again only when its SQL changed (new code, a new column), since
  binding a view over every file reads every file's schema. A plain run always defines it.
#}
{% materialization raw_staging_view, adapter='duckdb' %}
    {%- set source_name, table_name = config.require('raw_source') -%}
    {%- set start, end = run_window() -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set fingerprint = local_md5(sql) -%}
    {%- set current = run_query(
        "select comment from duckdb_views() where schema_name = '" ~ this.schema ~ "' and view_name = '"
        ~ this.identifier ~ "'"
    ).columns[0].values() -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% if start == '' or existing_relation is none or current | list != [fingerprint] %}
        {% if existing_relation is not none and existing_relation.type != 'view' %}
            {{ drop_relation_if_exists(existing_relation) }}
        {% endif %}
        {% call statement('main') -%}
            create or replace view {{ target_relation }} as {{ sql }};
            comment on view {{ target_relation }} is '{{ fingerprint }}'
        {%- endcall %}
    {% else %}
        {% call statement('main') -%}
            select 1
        {%- endcall %}
    {% endif %}

    {% if start != '' %}
        {%- set window_relation = this.incorporate(path={'identifier': this.identifier ~ '__run_window'}, type='view') -%}
        {%- set full_source = source(source_name, table_name) | string -%}
        {% call statement('run_window') -%}
            create or replace view {{ window_relation }} as
            {{ sql | replace(full_source, raw_in_run_window(source_name, table_name)) }};
            comment on view {{ window_relation }} is '{{ start }}/{{ end }}'
        {%- endcall %}
    {% endif %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#
  What a model or test reads of a `raw_staging_view` model in a partition run: its view
  `<model>__run_window` when that view was made for this very window (its comment), else the
  model itself (every file; the right rows, at the cost of reading them). Outside a window, the
  model itself.
#}
{% macro staged_in_run_window(relation) -%}
    {%- set start, end = run_window() -%}
    {%- if not execute or start == '' -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- set identifier = relation.identifier ~ '__run_window' -%}
    {%- set made_for = run_query(
        "select comment from duckdb_views() where schema_name = '" ~ relation.schema ~ "' and view_name = '"
        ~ identifier ~ "'"
    ).columns[0].values() | list -%}
    {%- if made_for != [start ~ '/' ~ end] -%}
        {{- return(relation) -}}
    {%- endif -%}
    {{- return(relation.incorporate(path={'identifier': identifier}, type='view')) -}}
{%- endmacro %}
