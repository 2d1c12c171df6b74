-- CMIP5 to canonical names, units and the reanalysis' sign conventions. Fluxes (per
-- second) become monthly totals with the real number of seconds in each month of the
-- model's own calendar (noleap: February has 28 days in every year).
with source as (
    select * from {{ source('cmip5', 'cmip5_monthly') }}
),

renamed as (
    select
        experiment,
        model,
        calendar,
        cast(band as integer) as band,
        cast(month as date) as month,
        {{ days_in_month('calendar', 'month') }} as days_in_month,
        tas - 273.15 as t_air,
        ts - 273.15 as t_surface,
        -- kg m-2 s-1 of water = mm s-1; / 1000 -> m s-1; x seconds in the month -> m per month
        pr * {{ seconds_in_month('calendar', 'month') }} / 1000.0 as p_total,
        prsn * {{ seconds_in_month('calendar', 'month') }} / 1000.0 as p_snow,
        rlds * {{ seconds_in_month('calendar', 'month') }} as r_thermal,
        rsds * {{ seconds_in_month('calendar', 'month') }} as r_solar,
        -- CMIP turbulent fluxes are positive upwards; the reanalysis' are positive downwards.
        -hfls * {{ seconds_in_month('calendar', 'month') }} as q_latent,
        -hfss * {{ seconds_in_month('calendar', 'month') }} as q_sensible,
        mrsos as soil_water_top_kg_m2,
        mrso as soil_water_total_kg_m2
    from source
)

select * from renamed
