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
            {%- if raw_view_is_current(node, location) -%}
                {#- a partition run whose files bring no new column: binding the view again would read every file -#}
            {%- elif raw_files_landed(location) -%}
                {%- do run_query("create or replace view raw." ~ node.name ~ " as select * from " ~ location) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{% endmacro %}

{#
  True in a partition run (a month window set) when the view raw.<table> of a source with one
  file per month (`files_per_month` in its meta) exists and carries every column of the
  window's files: the view, a glob, already sees the new files. Outside a window, or when the
  window's files bring a column the view lacks, the view is defined again (reading every file).
#}
{% macro raw_view_is_current(node, location) %}
    {%- set start, end = run_window() -%}
    {%- if start == '' or not (node.meta.files_per_month or node.source_meta.files_per_month) -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set present = raw_view_columns(node.name) -%}
    {%- if not present -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set files = raw_window_files(location) -%}
    {%- if not files -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- set read = "read_parquet(['" ~ files | join("', '") ~ "'], union_by_name = true, filename = true)" -%}
    {%- set brought = run_query("select column_name from (describe select * from " ~ read ~ ")").columns[0].values() -%}
    {{- return(brought | reject('in', present | map(attribute=0) | list) | list | length == 0) -}}
{% endmacro %}

{# (column, type) of the view raw.<name> from the catalog (no file is read); empty when it does not exist. #}
{% macro raw_view_columns(name) %}
    {%- set found = run_query(
        "select column_name, data_type from information_schema.columns where table_schema = 'raw' and table_name = '"
        ~ name ~ "' order by ordinal_position"
    ) -%}
    {{- return(found.rows | map('list') | list) -}}
{% endmacro %}

{#
  The files of a one-file-per-month source (`<folder>/YYYY-MM.parquet`, the glob of `relation`)
  that a partition run reads: those of the window's months, and any file whose name is not a
  month (a stray copy, say), which may hold the window's rows. Listed without opening a file.
#}
{% macro raw_window_files(relation) %}
    {%- set start, end = run_window() -%}
    {%- set pattern = (relation | string).split("'")[1] -%}
    {%- set files = run_query("select file from glob('" ~ pattern ~ "') order by file").columns[0].values() -%}
    {%- set month_file = modules.re.compile('^([0-9]{4}-[0-9]{2})\\.parquet$') -%}
    {%- set chosen = [] -%}
    {%- for file in files -%}
        {%- set matched = month_file.match(file.split('/')[-1]) -%}
        {%- if not matched or (start[:7] <= matched.group(1) < end[:7]) -%}
            {%- do chosen.append(file) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(chosen) -}}
{% endmacro %}

{#
  What a partition run reads of a raw source table: with a month window set and a source of
  one file per month (`files_per_month`), only the window's files (raw_window_files), their
  columns those of the view raw.<table> (a column older files lack is a typed null), so the
  run's cost does not grow with the history; otherwise the source itself (every file). A
  window without a file fails, naming the window and the folder.
#}
{% macro raw_in_run_window(source_name, table_name) %}
    {%- set relation = source(source_name, table_name) -%}
    {%- set start, end = run_window() -%}
    {%- if not execute or start == '' -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', source_name)
        | selectattr('name', 'equalto', table_name) | first -%}
    {%- set present = raw_view_columns(table_name) -%}
    {%- if not (node.meta.files_per_month or node.source_meta.files_per_month) or not present -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- set files = raw_window_files(relation) -%}
    {%- if not files -%}
        {%- do exceptions.raise_compiler_error(
            "no raw file of " ~ source_name ~ "." ~ table_name ~ " for the run's window [" ~ start ~ ", " ~ end
            ~ ") in " ~ (relation | string).split("'")[1]
        ) -%}
    {%- endif -%}
    {%- set read = "read_parquet(['" ~ files | join("', '") ~ "'], union_by_name = true, filename = true)" -%}
    {%- set brought = run_query("select column_name from (describe select * from " ~ read ~ ")").columns[0].values() -%}
    {%- set columns = [] -%}
    {%- for name, type in present -%}
        {%- do columns.append(adapter.quote(name) if name in brought else 'cast(null as ' ~ type ~ ') as ' ~ adapter.quote(name)) -%}
    {%- endfor -%}
    {{- return('(select ' ~ columns | join(', ') ~ ' from ' ~ read ~ ')') -}}
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
    {%- set viewed = raw_view_columns(table_name) -%}
    {%- if viewed -%}
        {#- the view raw.<table> (on-run-start: every landed file's columns) spares reading every file -#}
        {{- return(viewed | map(attribute=0) | list) -}}
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
