# syntax=docker/dockerfile:1
# The hub: JupyterHub with Shuyu (hub side, platform service, policies) and
# configurable-http-proxy. Build from the repository root:
#
#   docker build -f images/hub.Dockerfile -t shuyu/hub:0.1.0 .                    # one host
#   docker build -f images/hub.Dockerfile --target k8s -t shuyu/hub:0.1.0-k8s .  # Helm chart
#
# The `k8s` target adds what the Zero to JupyterHub chart's own hub configuration
# imports (KubeSpawner, pycurl) and the chart's idle culler; the one-host image has no
# KubeSpawner (it is no dependency of the project).

# configurable-http-proxy from the repository's lock file. Its dependencies want a newer
# Node.js than Debian packages, so npm runs here and only node and the modules are kept.
FROM node:22-bookworm-slim AS proxy
WORKDIR /opt/shuyu
COPY package.json package-lock.json ./
RUN npm ci --omit=dev \
 && npm cache clean --force


# The Shuyu JupyterLab extension (labextension/), built as `make labext` builds it: npm
# packages from its package-lock.json, TypeScript, then jupyter-builder from the pinned
# JupyterLab. Node.js comes from the proxy stage (Debian's is too old for the builder).
FROM python:3.11-slim-bookworm AS labext
COPY --from=proxy /usr/local/bin/node /usr/local/bin/node
COPY --from=proxy /usr/local/lib/node_modules /usr/local/lib/node_modules
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

FROM python:3.11-slim-bookworm AS hub

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

RUN apt-get update \
 && apt-get install -y --no-install-recommends tini bubblewrap fonts-noto-cjk chromium \
 && rm -rf /var/lib/apt/lists/*

COPY --from=proxy /usr/local/bin/node /usr/local/bin/node
COPY --from=proxy /opt/shuyu/node_modules /opt/shuyu/node_modules
RUN /opt/shuyu/node_modules/.bin/configurable-http-proxy --version

WORKDIR /opt/shuyu

# The project, pinned by constraints.txt. Only what the hub runs is copied in.
COPY pyproject.toml README.md constraints.txt jupyterhub_config.py ./
COPY hub ./hub
COPY extensions ./extensions
COPY kernels ./kernels
COPY policies ./policies
# The built extension: `pip install` puts it in <prefix>/share/jupyter/labextensions, from
# where the gateway serves its assets to every sandbox's browser (pyproject.toml).
COPY --from=labext /opt/labext/labextension/dist ./labextension/dist
RUN pip install -c constraints.txt . \
 && python -c "import shuyu_platform.hubconfig, dockerspawner" \
 && jupyter labextension list 2>&1 | grep -q "shuyu-lab.*enabled"

# Settings (hub/shuyu_platform/settings.py) that would otherwise point into a source
# checkout. SHUYU_HOME is a volume: mount the host's state root at this same path
# when ShuyuDockerSpawner is used, since container bind sources are host paths.
# SHUYU_SPAWNER=docker also needs a jupyterhub_config.py that calls
# listen_on_sandbox_network() after configure() (images/README.md); the stock one
# copied above keeps the hub on 127.0.0.1, out of the containers' reach.
ENV SHUYU_HOME=/srv/shuyu \
    SHUYU_POLICIES_DIR=/opt/shuyu/policies \
    SHUYU_PROXY_COMMAND=/opt/shuyu/node_modules/.bin/configurable-http-proxy \
    SHUYU_IP=0.0.0.0 \
    SHUYU_SPAWNER=docker
VOLUME /srv/shuyu

# One host: the hub runs as root, because it drives the Docker socket (root-equivalent
# anyway) and gives each work folder to the containers' uid.
EXPOSE 8000
ENTRYPOINT ["tini", "-g", "--"]
CMD ["jupyterhub", "-f", "/opt/shuyu/jupyterhub_config.py"]


FROM hub AS k8s

# The chart runs its own jupyterhub_config.py (hub.extraConfig calls Shuyu's
# configure()), as uid 1000, with the hub database on its volume at /srv/jupyterhub.
RUN pip install "jupyterhub-kubespawner>=7,<8" "jupyterhub-idle-culler>=1.4" "pycurl>=7.45.3" \
 && python -c "import kubespawner, pycurl, jupyterhub_idle_culler" \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /srv/jupyterhub jovyan \
 && install -d -o 1000 -g 1000 /srv/jupyterhub
ENV SHUYU_SPAWNER=kubespawner.KubeSpawner
USER 1000:1000
WORKDIR /srv/jupyterhub


# Without --target: the one-host hub.
FROM hub
