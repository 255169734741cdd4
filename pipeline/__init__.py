"""Apache Beam transforms and the `unigeo build` job."""
