# Dataflow (or any Beam portable runner) worker image for `unigeo build`.
#
# The Beam SDK version here must equal the one that launches the job: BEAM_VERSION is pyproject.toml's pin of
# apache-beam (a test checks they agree), and every other package takes its version from constraints.txt, the
# lock that the launcher's install uses too.
# Build and push, then pass it to the job:
#   docker build -t REGION-docker.pkg.dev/PROJECT/unigeo/worker:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/unigeo/worker:0.1.0
#   unigeo build --config gs://.../sources.yaml --out gs://.../out --runner DataflowRunner \
#     --project PROJECT --region REGION --temp_location gs://.../tmp \
#     --sdk_container_image REGION-docker.pkg.dev/PROJECT/unigeo/worker:0.1.0
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}
ARG BEAM_VERSION

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A C compiler and libjpeg-turbo's headers build unigeo._jpegregion (crops decode only the band of the
# panorama they see). DL3008: the base image's Debian release decides these versions.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libjpeg62-turbo-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/unigeo
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY unigeo ./unigeo
COPY sources ./sources
COPY pipeline ./pipeline
COPY synth ./synth
COPY model ./model

# Workers run the build job only: the core install with `gcp` (Beam's GCS filesystem, gcsfs) and `s3` (s3fs)
# for remote inputs, and `report` for a report made on a worker; no `train` extra (so no torch). GDAL comes
# inside the rasterio wheel. The check imports what workers unpickle and confirms the SDK matches the pin.
# DL3013: every version comes from constraints.txt.
# hadolint ignore=DL3013
RUN pip install -c constraints.txt "apache-beam[gcp]==${BEAM_VERSION}" ".[gcp,s3,report]" \
 && python -c "import apache_beam, sys; sys.exit(apache_beam.__version__ != '${BEAM_VERSION}')" \
 && python -c "import unigeo.pipeline.transforms, unigeo.pipeline.imagery, unigeo.pipeline.job, unigeo._jpegregion"

# The Beam SDK harness, as in the base image.
ENTRYPOINT ["/opt/apache/beam/boot"]
