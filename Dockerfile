# Dataflow (or any Beam portable runner) worker image for `unigeo build`.
#
# The Beam SDK version here must equal the one that launches the job (see pyproject.toml).
# Build and push, then pass it to the job:
#   docker build -t REGION-docker.pkg.dev/PROJECT/unigeo/worker:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/unigeo/worker:0.1.0
#   unigeo build --config gs://.../sources.yaml --out gs://.../out --runner DataflowRunner \
#     --project PROJECT --region REGION --temp_location gs://.../tmp \
#     --sdk_container_image REGION-docker.pkg.dev/PROJECT/unigeo/worker:0.1.0
FROM apache/beam_python3.11_sdk:2.77.0

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
COPY pyproject.toml setup.py README.md ./
COPY unigeo ./unigeo
COPY sources ./sources
COPY pipeline ./pipeline
COPY synth ./synth
COPY model ./model

# Workers run the build job only: the core install, no `report` and no `train` extra (so no torch).
# GDAL comes inside the rasterio wheel; `gcp` brings Beam's GCS filesystem and gcsfs for gs:// paths.
# The check imports what workers unpickle: the transforms and everything they import.
# DL3013: Beam is pinned to the launcher's version; `.` is this project, its dependencies are ranges.
# hadolint ignore=DL3013
RUN pip install "apache-beam[gcp]==2.77.0" ".[gcp]" \
 && python -c "import unigeo.pipeline.transforms, unigeo.pipeline.imagery, unigeo.pipeline.job, unigeo._jpegregion"

# The Beam SDK harness, as in the base image.
ENTRYPOINT ["/opt/apache/beam/boot"]
