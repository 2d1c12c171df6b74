-- ERA5-Land to canonical names and units. Rows are aggregated to calendar months so a
-- daily product lands the same way: means for states, sums for accumulations (`*_sum`).
-- A raw row delivered twice would be summed into its month (doubling precipitation and
-- radiation): the model refuses it instead, naming band, month, date and files
-- (`unique_raw_key` is the same rule as a test). The raw key is band, month and the product's
-- own time stamp `date` (the day of a daily product, the month's first day of a monthly one)
-- where the landed files carry it.
-- Tagged `monthly`: in Dagster it is partitioned by month with the history mart, so a landed
-- month flows through both in one run (the view itself covers every month).
{{ config(tags=['monthly']) }}
{%- set raw_key = raw_key_columns('era5_land', 'era5_land_monthly', ['band', 'month'], ['date']) %}

with source as (
    select * from {{ source('era5_land', 'era5_land_monthly') }}
),

duplicates as (
    {{ raw_key_duplicates('source', raw_key) }}
),

renamed as (
    select
        cast(band as integer) as band,
        cast(date_trunc('month', month) as date) as month,
        count(*) as n_source_rows,
        avg(temperature_2m) - 273.15 as t_air,
        avg(skin_temperature) - 273.15 as t_surface,
        sum(total_precipitation_sum) as p_total,
        sum(snowfall_sum) as p_snow,
        sum(surface_thermal_radiation_downwards_sum) as r_thermal,
        sum(surface_solar_radiation_downwards_sum) as r_solar,
        -- ECMWF fluxes are positive downwards: the canonical convention, kept as is.
        sum(surface_latent_heat_flux_sum) as q_latent,
        sum(surface_sensible_heat_flux_sum) as q_sensible,
        avg(volumetric_soil_water_layer_1) as w_0,
        avg(volumetric_soil_water_layer_2) as w_1,
        avg(volumetric_soil_water_layer_3) as w_2,
        avg(volumetric_soil_water_layer_4) as w_3,
        avg(soil_temperature_level_1) - 273.15 as t_soil_0,
        avg(soil_temperature_level_2) - 273.15 as t_soil_1,
        avg(soil_temperature_level_3) - 273.15 as t_soil_2,
        avg(soil_temperature_level_4) - 273.15 as t_soil_3
    from source
    group by 1, 2
)

select * from renamed
where {{ refuse_raw_duplicates('duplicates', raw_key, 'stg_era5_land__monthly') }}
