# syntax=docker/dockerfile:1
# The Spark DP engine's images (Tumult Analytics), built from the repository root:
#
#   docker build -f images/spark.Dockerfile --target hub -t shuyu/hub:0.1.0-spark .
#   docker build -f images/spark.Dockerfile --target executor -t shuyu/spark-executor:0.1.0 .
#
# `hub` is the Helm chart's hub image (hub.Dockerfile --target k8s, built and tagged
# first) plus Java 17 and .venv-tumult, where the platform service starts the Spark driver.
# `executor` is what Spark on Kubernetes starts for each executor: the same Python 3.11,
# Java 17 and .venv-tumult (PySpark requires the driver's Python minor version on the
# workers, and Tumult's noise runs in Python UDFs there), with Spark's own Kubernetes
# entrypoint. Neither image was built where this file was written (no Docker engine):
# build both and run one query before relying on them.
ARG HUB_IMAGE=shuyu/hub:0.1.0-k8s
ARG SPARK_IMAGE=apache/spark:3.5.7


FROM ${HUB_IMAGE} AS hub
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
COPY constraints-tumult.txt /opt/shuyu/
RUN python -m venv /opt/shuyu/.venv-tumult \
 && /opt/shuyu/.venv-tumult/bin/pip install -c /opt/shuyu/constraints-tumult.txt tmlt.analytics \
 && /opt/shuyu/.venv-tumult/bin/python -c "import tmlt.analytics, pyspark"
ENV SHUYU_SPARK_PYTHON=/opt/shuyu/.venv-tumult/bin/python
USER 1000:1000


# Spark's Kubernetes entrypoint scripts, from the release PySpark in .venv-tumult matches.
FROM ${SPARK_IMAGE} AS spark-dist

FROM python:3.11-slim-bookworm AS executor
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini procps \
 && rm -rf /var/lib/apt/lists/*
COPY constraints-tumult.txt /opt/shuyu/
RUN python -m venv /opt/shuyu/.venv-tumult \
 && /opt/shuyu/.venv-tumult/bin/pip install -c /opt/shuyu/constraints-tumult.txt tmlt.analytics
COPY --from=spark-dist /opt/entrypoint.sh /opt/decom.sh /opt/
ENV SPARK_HOME=/opt/shuyu/.venv-tumult/lib/python3.11/site-packages/pyspark \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    PYSPARK_PYTHON=/opt/shuyu/.venv-tumult/bin/python
RUN useradd --uid 185 --no-create-home spark
USER 185
ENTRYPOINT ["/opt/entrypoint.sh"]
