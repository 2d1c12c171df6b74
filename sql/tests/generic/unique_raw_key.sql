{#
  Fails on every key of the raw source table (rows as landed, before the model aggregates
  them) that occurs more than once, naming the key, the number of rows and their files.
  `optional_columns` join the key where the landed files carry them, `substitutes` replace a
  key column by the one the files carry in its place (raw_key_columns).
  Attached to the staging model that reads the source; set severity error where a duplicate
  must stop the models downstream (dbt skips them). A partition run reads only its window's
  files (macros/raw.sql: raw_in_run_window); a plain build reads every file.
#}
{% test unique_raw_key(model, source_name, table_name, columns, optional_columns=[], substitutes={}) %}
{{ raw_key_duplicates(
    raw_in_run_window(source_name, table_name),
    raw_key_columns(source_name, table_name, columns, optional_columns, substitutes),
) }}
{% endtest %}
