-- Lithology areas to fractions of each band's mapped area.
with source as (
    select * from {{ source('usgs', 'band_lithology') }}
),

renamed as (
    select
        cast(band as integer) as band,
        lithology,
        area_km2,
        area_km2 / sum(area_km2) over (partition by band) as fraction
    from source
)

select * from renamed
