# authpolicy in a container: a slim Python, the package installed from this checkout (never
# from the index by name: `authpolicy` there is someone else's), run as a non-root user.
#   docker build -t authpolicy .
#   docker run --rm -v "$PWD:/work" -e AZURE_TENANT_ID -e AZURE_CLIENT_ID \
#     -e AZURE_FEDERATED_TOKEN_FILE=/work/token authpolicy plan -c policies.yaml
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin authpolicy

WORKDIR /src
COPY pyproject.toml README.md ./
COPY reconciler ./reconciler
RUN python -m pip install --no-cache-dir . && rm -rf /src

USER authpolicy
WORKDIR /work
ENTRYPOINT ["authpolicy"]
CMD ["--help"]
