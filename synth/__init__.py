"""A synthetic metro written in the formats a real user has.

One 3D scene (streets, buildings with heights and colours, trees, parks, water, POIs) is placed at
real coordinates, then rendered to every modality: aerial orthophotos, a DSM, equirectangular street
panoramas, POIs and a metro boundary. Because all of them come from the same scene, they agree: the
red building in a panorama is a red roof in the aerial and a high block in the DSM.
"""
