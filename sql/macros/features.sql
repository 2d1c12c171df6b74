{# Time features shared by both marts: year, and the month of year on the unit circle. #}
{% macro time_features(month) -%}
    year({{ month }}) as year,
    sin(2 * pi() * month({{ month }}) / 12.0) as month_sin,
    cos(2 * pi() * month({{ month }}) / 12.0) as month_cos
{%- endmacro %}
