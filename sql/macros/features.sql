{# Time features shared by both marts: year, and the month of year on the unit circle. #}
{% macro time_features(month) -%}
    year({{ month }}) as year,
    sin(2 * pi() * month({{ month }}) / 12.0) as month_sin,
    cos(2 * pi() * month({{ month }}) / 12.0) as month_cos
{%- endmacro %}

{# Thickness (m) of ERA5-Land soil layer `layer` (0-3), from var('soil_layers_m'). #}
{% macro layer_thickness_m(layer) -%}
    {%- set bounds = var('soil_layers_m')[layer] -%}
    {{ (bounds[1] - bounds[0]) | round(6) }}
{%- endmacro %}

{# Thickness (m) of soil layer `layer` (0-3) above `depth_m`: the part of it in the top `depth_m`. #}
{% macro layer_thickness_above_m(layer, depth_m) -%}
    {%- set bounds = var('soil_layers_m')[layer] -%}
    {{ ([0.0, ([bounds[1], depth_m] | min) - bounds[0]] | max) | round(6) }}
{%- endmacro %}
