{#
  The views raw.<table> over the lake's raw Parquet, one per source table with files landed.
  Defined here (on-run-start, under the lock dbt holds anyway) and not by the raw assets: a view
  over a glob sees every file landed later without being defined again, so landing a month
  never needs to write to the warehouse. Redefined on every dbt run so a new column shows up.
#}
{% macro create_raw_views() %}
    {%- if execute -%}
        {%- do run_query("create schema if not exists raw") -%}
        {%- for node in graph.sources.values() if node.package_name == project_name -%}
            {%- set location = (node.meta.external_location or node.source_meta.external_location)
                | replace('{name}', node.name) -%}
            {%- if raw_files_landed(location) -%}
                {%- do run_query("create or replace view raw." ~ node.name ~ " as select * from " ~ location) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{% endmacro %}

{#
  True when files of a source table have landed (its external location's glob matches any);
  false at parse time, when nothing runs.
#}
{% macro raw_files_landed(relation) %}
    {%- if not execute -%}
        {{- return(false) -}}
    {%- endif -%}
    {#- the first quoted string of `read_parquet('<glob>', ...)` is the glob -#}
    {%- set pattern = (relation | string).split("'")[1] -%}
    {{- return(run_query("select count(*) from glob('" ~ pattern ~ "')").columns[0].values()[0] > 0) -}}
{% endmacro %}

{#
  The columns the landed files of a source table carry (all files together); none before
  anything has landed, or at parse time. Lets a model read a column only the files of some
  sources have (an optional band, `unit` instead of `band`).
#}
{% macro landed_columns(source_name, table_name) %}
    {%- set relation = source(source_name, table_name) -%}
    {%- if not raw_files_landed(relation) -%}
        {{- return([]) -}}
    {%- endif -%}
    {{- return(run_query("select column_name from (describe select * from " ~ relation ~ ")").columns[0].values() | list) -}}
{% endmacro %}

{# `expression` where the landed files carry `column`, else a typed null: an absent variable stays absent. #}
{% macro if_landed(landed, column, expression) -%}
    {%- if column in landed -%}{{ expression }}{%- else -%}cast(null as double){%- endif -%}
{%- endmacro %}

{#
  The raw key of a source table: `columns`, plus those of `optional_columns` its landed files
  carry (a column added to the raw schema later, such as ERA5-Land's `date`, is absent from
  older lakes and from hand-made fixtures). `substitutes` maps a key column to the one the
  landed files carry in its place (a reanalysis of basins lands `unit` where bands land
  `band`). Before anything has landed, or at parse time, just `columns`. `landed` (the table's
  `landed_columns`, where the caller has them already) spares reading the files' schemas again.
#}
{% macro raw_key_columns(source_name, table_name, columns, optional_columns=[], substitutes={}, landed=none) %}
    {%- if not execute or not (optional_columns or substitutes) -%}
        {{- return(columns) -}}
    {%- endif -%}
    {%- set present = landed if landed is not none else landed_columns(source_name, table_name) -%}
    {%- if not present -%}
        {{- return(columns) -}}
    {%- endif -%}
    {%- set key = [] -%}
    {%- for column in columns -%}
        {%- set substitute = substitutes.get(column) -%}
        {%- do key.append(substitute if substitute in present else column) -%}
    {%- endfor -%}
    {{- return(key + (optional_columns | select('in', present) | list)) -}}
{% endmacro %}

{#
  One row per key of `relation` (raw rows, before any aggregation) that occurs more than once,
  with its number of rows and the files they came from (sources read with filename = true).
#}
{% macro raw_key_duplicates(relation, columns) -%}
    select
        {{ columns | join(', ') }},
        count(*) as n_rows,
        string_agg(distinct filename, ', ' order by filename) as files
    from {{ relation }}
    group by {% for column in columns %}{{ loop.index }}{{ ', ' if not loop.last }}{% endfor %}
    having count(*) > 1
{%- endmacro %}

{#
  A condition that is true when the CTE `duplicates` (rows of raw_key_duplicates) is empty and
  otherwise fails the query with an error naming the first duplicated keys and their files:
  a model filtered on it refuses duplicated raw rows rather than aggregating them.
#}
{% macro refuse_raw_duplicates(duplicates, columns, what) -%}
    case
        when (select count(*) from {{ duplicates }}) = 0 then true
        else error((
            select
                '{{ what }} refuses duplicated raw rows ('
                || (select count(*) from {{ duplicates }}) || ' key(s) of ({{ columns | join(", ") }}) more than once), first: '
                || string_agg(
                    {%- for column in columns %}
                    '{{ column }} ' || cast({{ column }} as varchar) || ', ' ||
                    {%- endfor %}
                    n_rows || ' rows in ' || files, '; '
                )
            from (select * from {{ duplicates }} order by all limit 3)
        ))
    end
{%- endmacro %}
