-- One row per band: lithology fractions and soil properties per ERA5-Land layer, wide.
with lithology as (
    select * from {{ ref('stg_usgs__lithology') }}
),

soil as (
    select * from {{ ref('int_soil_properties_averaged_to_layers') }}
),

lithology_wide as (
    select
        {% for class in var('lithology_classes') -%}
        coalesce(sum(fraction) filter (where lithology = '{{ class }}'), 0.0) as litho_{{ class }},
        {% endfor -%}
        band
    from lithology
    group by band
),

soil_wide as (
    select
        {% for layer in range(4) -%}
        max(value) filter (where property = 'bulk_density' and layer = {{ layer }}) as bulk_density_{{ layer }},
        max(value) filter (where property = 'organic_carbon' and layer = {{ layer }}) as organic_carbon_{{ layer }},
        {% endfor -%}
        band
    from soil
    group by band
)

select
    lithology_wide.band,
    lithology_wide.* exclude (band),  -- noqa: RF02
    soil_wide.* exclude (band)  -- noqa: RF02
from lithology_wide
inner join soil_wide on lithology_wide.band = soil_wide.band
