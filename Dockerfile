# LLM Router: lighttpd + the router's FastCGI responders on Debian 12.
#   docker build -t llm-router .
#   docker run -p 8080:8080 -e OPENAI_API_KEY=... -v llm-router-data:/var/lib/llm-router llm-router
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      gcc make pkg-config libc6-dev libfcgi-dev libcurl4-openssl-dev libjansson-dev \
      libconfig-dev libsqlite3-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY src ./src
COPY conf ./conf
RUN make BUILD=build all && make BUILD=build install PREFIX=/usr/local DESTDIR=/out

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      lighttpd libfcgi0ldbl libcurl4 libjansson4 libconfig9 libsqlite3-0 ca-certificates curl \
      && rm -rf /var/lib/apt/lists/* \
      && useradd --system --home /var/lib/llm-router --shell /usr/sbin/nologin llmrouter \
      && mkdir -p /var/lib/llm-router/data /run/llm-router \
      && chown -R llmrouter:llmrouter /var/lib/llm-router /run/llm-router
COPY --from=build /out/usr/local /usr/local
COPY lighttpd/llm-router-container.conf /etc/lighttpd/llm-router-container.conf
USER llmrouter
ENV LLM_ROUTER_CONFIG=/usr/local/etc/llm-router/llm-router.conf LLM_ROUTER_HOME=/var/lib/llm-router
VOLUME /var/lib/llm-router
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:8080/v1/models >/dev/null || exit 1
CMD ["/usr/sbin/lighttpd", "-D", "-f", "/etc/lighttpd/llm-router-container.conf"]
