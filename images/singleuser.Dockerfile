# syntax=docker/dockerfile:1
# What a tenant's single-user server runs: ShuyuDockerSpawner (one host) and the
# Kubernetes chart (images/helm) both use it. Build from the repository root; the tag is
# the project's version (pyproject.toml), which is what both of them ask for:
#
#   docker build -f images/singleuser.Dockerfile -t shuyu/singleuser:0.1.0 .
#
# It holds the server, JupyterLab (with its Chinese language pack), a Python kernel with
# the data libraries, and Shuyu's in-sandbox packages only (the in-kernel client `shuyu`,
# the server-side `shuyu_server`, the JupyterLab extension `shuyu-lab`): never the hub
# side (shuyu_platform), its policies or its secrets.
# The Shuyu JupyterLab extension (labextension/), built as `make labext` builds it: npm
# packages from its package-lock.json, TypeScript, then jupyter-builder from the pinned
# JupyterLab. Node.js comes from the official image (Debian's is too old for the builder).
FROM node:22-bookworm-slim AS node

FROM python:3.11-slim-bookworm AS labext
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /opt/labext
COPY constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt jupyterlab
COPY labextension ./labextension
RUN cd labextension \
 && npm ci --no-audit --no-fund --loglevel=error \
 && node_modules/.bin/tsc \
 && jupyter-builder build . \
 && test -f dist/shuyu-lab/package.json

FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# tini reaps orphaned kernel processes. `-s` (subreaper) keeps that working when it is
# not PID 1, e.g. under ShuyuDockerSpawner, which also asks Docker for its own init.
# fonts-noto-cjk: Chinese labels in matplotlib charts (kernels/matplotlibrc names it first).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

# jovyan, uid/gid 1000: ShuyuDockerSpawner.container_user and singleuser.uid/fsGid.
# The mount points exist in the image so that a read-only root filesystem needs no
# directory created at start.
RUN groupadd --gid 1000 jovyan \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/jovyan --shell /bin/bash jovyan \
 && install -d -o 1000 -g 1000 -m 0700 /home/jovyan/work /home/jovyan/.local \
 && install -d -m 0755 /data /data/views /data/synthetic

# Versions pinned by the repository's constraints.txt (the ones the tests ran with).
COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt \
        jupyterhub jupyterlab jupyterlab-language-pack-zh-CN ipykernel pandas pyarrow \
        requests matplotlib \
 && rm /tmp/constraints.txt

COPY kernels/shuyu /usr/local/lib/python3.11/site-packages/shuyu
COPY kernels/matplotlibrc /etc/matplotlibrc
ENV MATPLOTLIBRC=/etc/matplotlibrc
COPY extensions/shuyu_server /usr/local/lib/python3.11/site-packages/shuyu_server
# The Shuyu JupyterLab extension where JupyterLab loads prebuilt extensions from (the
# image's read-only prefix, never the tenant's home), and its Chinese labels: the
# `jupyterlab.locale` entry point pyproject.toml declares, as package metadata.
COPY --from=labext /opt/labext/labextension/dist/shuyu-lab /usr/local/share/jupyter/labextensions/shuyu-lab
RUN meta=/usr/local/lib/python3.11/site-packages/shuyu_server-0.1.0.dist-info \
 && mkdir "$meta" \
 && printf 'Metadata-Version: 2.1\nName: shuyu-server\nVersion: 0.1.0\n' > "$meta/METADATA" \
 && printf '[jupyterlab.locale]\nshuyu_lab = shuyu_server\n' > "$meta/entry_points.txt" \
 && printf 'shuyu_server\n' > "$meta/top_level.txt"
RUN python -c "import shuyu, shuyu_server.singleuser, jupyterhub.singleuser" \
 && command -v jupyterhub-singleuser \
 && jupyter labextension list 2>&1 | grep -q "shuyu-lab.*enabled" \
 && python -c "from importlib.metadata import entry_points as e; \
assert e(group='jupyterlab.locale', name='shuyu_lab')"

USER 1000:1000
WORKDIR /home/jovyan/work
EXPOSE 8888
ENTRYPOINT ["tini", "-s", "-g", "--"]
# jupyterhub-singleuser through Shuyu's fast-start wrapper (extensions/shuyu_server), in
# isolated mode: a module in the work folder (the working directory) shadows nothing.
CMD ["python", "-I", "-m", "shuyu_server.singleuser"]
