import yaml
from dbt_helpers import SQL_DIR

from sources import catalog


def test_dbt_vars_agree_with_the_catalog():
    config = yaml.safe_load((SQL_DIR / "dbt_project.yml").read_text())["vars"]
    assert tuple(config["lithology_classes"]) == catalog.LITHOLOGY_CLASSES
    assert tuple(tuple(layer) for layer in config["soil_layers_m"]) == catalog.SOIL_LAYERS_M
    ranged = set(config["canonical_ranges"])
    assert (
        set(catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT + catalog.TARGETS + catalog.SOIL_PROPERTY_FEATURES)
        <= ranged
    )
    for name, (low, high) in config["canonical_ranges"].items():
        assert low < high, name
    assert set(catalog.OPTIONAL_FEATURES) <= ranged
    # the six bands, the units dbt falls back on where no spatial_units table has landed
    assert [tuple(band) for band in config["bands"]] == [(b.south, b.north, b.area_km2) for b in catalog.BANDS]
    assert tuple(config["band_longitudes"]) == (catalog.LON_WEST, catalog.LON_EAST)


def test_profile_reads_the_same_variables_as_the_dagster_resources():
    profile = (SQL_DIR / "profiles.yml").read_text()
    assert "PERMAFROST_WAREHOUSE" in profile and "PERMAFROST_LAKE_ROOT" in profile
