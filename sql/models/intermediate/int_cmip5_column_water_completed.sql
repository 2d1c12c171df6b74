-- CMIP5 with total column soil water (mrso, kg m-2) on every row. Where the source has none
-- (published band tables carry only mrsos, the water of the top 10 cm), it is estimated as
-- mrsos times the reanalysis' ratio of 0-2.89 m column water to top-10 cm water for the band
-- and calendar month (mean over the years, and over the units whose nearest band it is). The
-- bias correction maps column water onto the reanalysis' per band and calendar month
-- afterwards, and a fixed positive ratio per band and calendar month cancels in that quantile
-- mapping: the corrected water keeps the timing and the change signal of the model's own mrsos.
with cmip5 as (
    select * from {{ ref('stg_cmip5__monthly') }}
),

era5 as (
    select * from {{ ref('stg_era5_land__monthly') }}
),

masses as (
    -- water per layer (m3 m-3 x thickness in m; kg m-2 / 1000), and the part of it in the
    -- top 10 cm (each layer's thickness above 0.10 m)
    select
        {% for layer in range(4) -%}
        w_{{ layer }} * {{ layer_thickness_m(layer) }} as column_{{ layer }},
        w_{{ layer }} * {{ layer_thickness_above_m(layer, 0.1) }} as top_{{ layer }},
        {% endfor -%}
        nearest_band as band,
        month(month) as calendar_month
    from era5
),

ratios as (
    select
        band,
        calendar_month,
        avg((column_0 + column_1 + column_2 + column_3) / (top_0 + top_1 + top_2 + top_3)) as column_to_top_10cm
    from masses
    group by band, calendar_month
),

completed as (
    select
        cmip5.* exclude (soil_water_total_kg_m2),  -- noqa: RF02
        coalesce(
            cmip5.soil_water_total_kg_m2, cmip5.soil_water_top_kg_m2 * ratios.column_to_top_10cm
        ) as soil_water_total_kg_m2,
        case
            when cmip5.soil_water_total_kg_m2 is not null then 'mrso'
            else 'mrsos x reanalysis column/top-10cm ratio'
        end as soil_water_total_origin
    from cmip5
    left join ratios
        on cmip5.band = ratios.band and month(cmip5.month) = ratios.calendar_month
)

select * from completed
