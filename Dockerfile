# LLM Router: lighttpd + the router's FastCGI responders on Debian 12, as a non-root user.
#   docker build -t llm-router .
#   docker run -p 8080:8080 -e OPENAI_API_KEY -v llm-router-data:/var/lib/llm-router llm-router
# or: docker compose -f lighttpd/compose.yaml up -d
# It serves the API at /v1/, /metrics and the dashboard at /dashboard/ (/metrics and the
# dashboard's figures need -e LLM_ROUTER_ADMIN_KEY); `make install` puts its files in share/llm-router/www/.
# The start command is the one `make test` runs against a `make install` (tests/integration/install.test.js).
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      gcc make pkg-config libc6-dev libfcgi-dev libcurl4-openssl-dev libjansson-dev \
      libconfig-dev libsqlite3-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY src ./src
COPY conf ./conf
COPY lighttpd ./lighttpd
COPY apache ./apache
COPY www ./www
RUN make all && make install PREFIX=/usr/local DESTDIR=/out

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      lighttpd libfcgi0ldbl libcurl4 libjansson4 libconfig9 libsqlite3-0 ca-certificates curl \
      && rm -rf /var/lib/apt/lists/* \
      && useradd --system --home-dir /var/lib/llm-router --shell /usr/sbin/nologin llmrouter \
      && install -d -o llmrouter -g llmrouter -m 0700 /var/lib/llm-router /var/lib/llm-router/run \
         /var/lib/llm-router/data
COPY --from=build /out/usr/local /usr/local
USER llmrouter
# Provider keys (OPENAI_API_KEY, ...) and LLM_ROUTER_ADMIN_KEY come from `docker run -e` or the
# compose file's environment; lighttpd passes its environment to the router.
ENV LLM_ROUTER_HOME=/var/lib/llm-router LLM_ROUTER_BIND=0.0.0.0 LLM_ROUTER_PORT=8080
VOLUME /var/lib/llm-router
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:8080/v1/models >/dev/null || exit 1
CMD ["/bin/sh", "-c", "mkdir -p -m 0700 \"$LLM_ROUTER_HOME/run\" && exec /usr/sbin/lighttpd -D -f /usr/local/share/llm-router/lighttpd-container.conf"]
