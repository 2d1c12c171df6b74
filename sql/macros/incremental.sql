{#
  Incremental strategy `replace_window`: delete EVERY row of the run's month window
  ([var min_month, var max_month), or the whole table without them), then insert the new rows,
  in the one transaction of the model. Unlike delete+insert on a unique key, a row that
  disappeared from the source disappears from the table, so later checks can see the gap.
  The window column is the model's `window_column` config (default `month`).
#}
{% macro get_incremental_replace_window_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set columns = arg_dict['dest_columns'] | map(attribute='quoted') | join(', ') -%}
    delete from {{ target }} where {{ in_month_window(config.get('window_column', 'month')) }};
    insert into {{ target }} ({{ columns }}) (select {{ columns }} from {{ arg_dict['temp_relation'] }})
{%- endmacro %}
