-- OpenLandMap soil properties from stored integers to physical units, long by depth (cm).
with source as (
    select * from {{ source('openlandmap', 'band_soil_properties') }}
),

long_by_depth as (
    unpivot source on b0, b10, b30, b60, b100, b200 into name depth_band value stored_value
),

renamed as (
    select
        cast(band as integer) as band,
        property,
        cast(substr(depth_band, 2) as integer) as depth_cm,
        stored_value * case stored_unit when '10 kg m-3' then 10.0 when '5 g kg-1' then 5.0 end as value,
        case property when 'bulk_density' then 'kg m-3' when 'organic_carbon' then 'g kg-1' end as unit
    from long_by_depth
)

select * from renamed
