"""Reject reasons: one stable string per way a record can fail, used in rejects, ledger and counters."""

# Panorama index rows (unigeo.sources.panoramas).
MISSING_PANO_ID = "missing_pano_id"  # empty id
BAD_LAT = "bad_lat"  # missing, not a number, or outside [-90, 90]
BAD_LON = "bad_lon"  # missing, not a number, or outside [-180, 180]
NULL_ISLAND = "null_island"  # lat = lon = 0: a placeholder, not a place
BAD_HEADING = "bad_heading"  # missing or not a number
HEADING_OUT_OF_RANGE = "heading_out_of_range"  # outside [0, 360)
MISSING_DATE = "missing_date"  # empty captured_at
BAD_DATE = "bad_date"  # not an ISO-8601 date or date-time
MISSING_URI = "missing_uri"  # empty uri
DUPLICATE_ROW = "duplicate_row"  # same pano_id and same values as an earlier row: the first is kept
DUPLICATE_ID_CONFLICT = "duplicate_id_conflict"  # same pano_id, different values: all are rejected
# Panorama records of a service (unigeo.sources.streetlevel): not_equirectangular (below) when the record's
# width is not twice its height.
NOT_PANORAMA = "not_panorama"  # Mapillary is_pano false or a perspective/fisheye camera; a field of view under 360

# Panoramas in the build job.
OUTSIDE_METROS = "outside_metros"  # inside no metro polygon
YEAR_OUT_OF_RANGE = "year_out_of_range"  # capture year neither the holdout year nor in --years

# Points of interest (unigeo.sources.pois).
POI_MISSING_CATEGORY = "poi_missing_category"  # no category (or no OSM tag that gives one)
POI_BAD_GEOMETRY = "poi_bad_geometry"  # no geometry, or one with no usable point
POI_LOW_CONFIDENCE = "poi_low_confidence"  # an Overture place below the source's min_confidence

# Imagery (unigeo.pipeline.imagery).
MISSING_FILE = "missing_file"  # the panorama's uri does not exist
UNREADABLE_FILE = "unreadable_file"  # the uri names a folder, or a file this process may not read
CORRUPT_JPEG = "corrupt_jpeg"  # the panorama does not decode
IMAGE_TOO_LARGE = "image_too_large"  # more pixels than --max-pixels (a decompression bomb, or a huge file)
NOT_EQUIRECTANGULAR = "not_equirectangular"  # width is not twice the height (after EXIF orientation)
IMAGE_TOO_SMALL = "image_too_small"  # fewer than MIN_PANO_HEIGHT rows: nothing to crop from
NO_USABLE_PANORAMA = "no_usable_panorama"  # cell: every kept panorama failed, so no sample
TILE_NO_IMAGERY = "tile_no_imagery"  # no raster of a year this split may use
TILE_NO_COVERAGE = "tile_no_coverage"  # no raster of the chosen years reaches the tile
TILE_NODATA = "tile_nodata"  # more nodata than --max-nodata
TILE_UNREADABLE = "tile_unreadable"  # a raster block of the tile does not read (truncated or corrupt file)

# Text (unigeo.pipeline.text_endpoint).
TEXT_ENDPOINT_FAILED = "text_endpoint_failed"  # the endpoint failed every try; the template's text is used
