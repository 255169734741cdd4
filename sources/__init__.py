"""Readers of UniGeo's inputs: metro boundaries, panorama indexes, rasters, POIs, ``sources.yaml``.

Plain Python, no Beam: the pipeline calls these functions inside its transforms.
"""
