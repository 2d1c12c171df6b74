{# Fails on every value outside var('canonical_ranges')[range_name or column_name]. #}
{% test in_canonical_range(model, column_name, range_name=none) %}
{%- set bounds = var('canonical_ranges')[range_name or column_name] %}
select *
from {{ model }}
where {{ column_name }} is not null
  and ({{ column_name }} < {{ bounds[0] }} or {{ column_name }} > {{ bounds[1] }})
{% endtest %}
