-- The spatial units of the reanalysis, one row per unit: the table the raw asset
-- `spatial_units` landed, or the six latitude bands where none has (macros/units.sql).
-- depends_on: {{ source('spatial_units', 'spatial_units') }}
select * from ({{ spatial_units() }})
