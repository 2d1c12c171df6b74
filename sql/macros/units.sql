{#
  The reanalysis' spatial units as a query, one row per unit: the table the raw asset
  `spatial_units` landed, or the six latitude bands (var('bands')) where none has landed (a lake
  from before spatial units, a hand-made fixture). Columns: unit, kind, name, latitude,
  longitude, area_km2, band (null outside the bands), nearest_band, series_group. Staging, the
  unit tests and dim_spatial_units read it here, so a partition run needs no other model built.
  The source is found in the graph, not through source(): a test reading the units must not
  depend on it, or dbt would run the test with a build of the source's other children (the
  scenario mart's test in a history-only build). A model reading them states its lineage with
  `-- depends_on: {{ source('spatial_units', 'spatial_units') }}`.
#}
{% macro spatial_units() -%}
    {%- set relation = landed_spatial_units() -%}
    {%- set west, east = var('band_longitudes') -%}
    select
        cast(unit as bigint) as unit,
        cast(kind as varchar) as kind,
        cast(name as varchar) as name,
        cast(latitude as double) as latitude,
        cast(longitude as double) as longitude,
        cast(area_km2 as double) as area_km2,
        cast(band as integer) as band,
        cast(nearest_band as integer) as nearest_band,
        cast(series_group as bigint) as series_group
    {% if relation is not none -%}
    from {{ relation }}
    {%- else -%}
    from (
        values
        {%- for south, north, area_km2 in var('bands') %}
        ({{ loop.index0 }}, 'band', 'band {{ loop.index0 }}', {{ (south + north) / 2 }}, {{ (west + east) / 2 }},
            {{ area_km2 }}, {{ loop.index0 }}, {{ loop.index0 }}, {{ loop.index0 }}){{ ',' if not loop.last }}
        {%- endfor %}
    ) as bands (unit, kind, name, latitude, longitude, area_km2, band, nearest_band, series_group)
    {%- endif %}
{%- endmacro %}

{#
  The landed `spatial_units` table as a relation (its read_parquet call), or none where none has
  landed, or at parse time. Found in the graph, not through source() (see spatial_units()).
#}
{% macro landed_spatial_units() -%}
    {%- set locations = [] -%}
    {%- if execute -%}
        {%- for node in graph.sources.values() if node.source_name == 'spatial_units' -%}
            {%- do locations.append((node.meta.external_location or node.source_meta.external_location)
                | replace('{name}', node.name)) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set relation = locations[0] if locations else none -%}
    {{- return(relation if relation is not none and raw_files_landed(relation) else none) -}}
{%- endmacro %}

{#
  Grid mode: the landed spatial units are cells (the sources file's `reanalysis: {units: cell}`).
  Decided from the lake itself when a model runs, as `raw_files_landed` decides whether a raw
  table exists: no variable to keep in step with the settings, a command-line `dbt build` and a
  Dagster run agree, and the manifest stays the same in both modes (a changed dbt var would make
  dbt parse the whole project again). False at parse time and on a lake of bands or basins.
#}
{% macro grid_mode() -%}
    {%- set relation = landed_spatial_units() -%}
    {%- if relation is none -%}
        {{- return(false) -}}
    {%- endif -%}
    {{- return(run_query("select count(*) from " ~ relation ~ " where kind = 'cell'").columns[0].values()[0] > 0) -}}
{%- endmacro %}

{#
  The cells' band weights, long: one row per cell (`unit`) and `band` (0-5) the cell weighs in,
  with its area `weight` (fractional band cover x cos latitude, `sources.grid`,
  landed as the columns band_weight_0..band_weight_5 of the cells' units table). Grid mode only.
#}
{% macro cell_band_weights() -%}
    {%- set relation = landed_spatial_units() -%}
    {%- for band in range(var('bands') | length) %}
    select cast(unit as bigint) as unit, {{ band }} as band, cast(band_weight_{{ band }} as double) as weight
    from {{ relation }}
    where band_weight_{{ band }} > 0
    {{- ' union all' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{# The `weight`-weighted mean of `value` over a group; null where `value` is null in any row of it. #}
{% macro weighted_mean(value, weight) -%}
    case when count({{ value }}) = count(*) then sum({{ weight }} * {{ value }}) / sum({{ weight }}) end
{%- endmacro %}
