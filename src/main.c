/* main.c - one binary, three roles: a FastCGI responder when a web server spawned it (fd 0 is a
 * listening socket), a plain CGI program when run as CGI (GATEWAY_INTERFACE is set), and a
 * command-line tool otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "fcgi_io.h"
#include "jsonx.h"
#include "log.h"
#include "server.h"
#include "upstream.h"
#include "util.h"

/* fd 0 is a socket in listening state: a web server (or spawn-fcgi) passed us its socket. */
static int stdin_is_listen_socket(void)
{
	int listening = 0;
	socklen_t len = sizeof(listening);
	if (fcntl(0, F_GETFD) < 0)
		return 0;
	if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
		return 0;
	return listening != 0;
}

static int load_global_config(void)
{
	char *path = config_default_path();
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(path, &errors);
	if (!cfg) {
		config_log_errors(&errors, "configuration error");
		buf_free(&errors);
		free(path);
		return -1;
	}
	buf_free(&errors);
	free(path);
	enum log_level lvl;
	if (log_level_parse(cfg->log_level, &lvl) == 0)
		log_set_level(lvl);
	config_global_set(cfg);
	return 0;
}

static int run_server(int listen_fd)
{
	if (load_global_config() < 0) {
		/* A CGI program answers every request itself, this one included (the reasons are in the
		 * web server's error log, where the configuration's errors went). A FastCGI responder
		 * exits instead, and the web server reports it. */
		if (listen_fd < 0)
			fputs("Status: 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n"
			      "{\"error\":{\"message\":\"The router's configuration is invalid; the web "
			      "server's error log names the file, line and reason.\",\"type\":\"server_error\","
			      "\"param\":null,\"code\":\"configuration_error\"}}\n",
			      stdout);
		return 78; /* EX_CONFIG */
	}
	if (upstream_global_init() < 0) {
		log_error(NULL, "libcurl initialisation failed");
		return 1;
	}
	int rc = listen_fd >= 0 ? server_run_fastcgi(listen_fd) : server_run_cgi();
	config_global_set(NULL);
	upstream_global_cleanup();
	return rc;
}

int main(int argc, char **argv)
{
	/* Before any JSON is made: jansson's heap counts in the gauge of call memory. */
	jsonx_count_memory();
	const char *gi = getenv("GATEWAY_INTERFACE");
	if (argc <= 1 || (gi && gi[0])) {
		if (stdin_is_listen_socket()) {
			if (fcgi_io_init() < 0) {
				log_error(NULL, "libfcgi initialisation failed");
				return 1;
			}
			return run_server(0);
		}
		if (gi && gi[0])
			return run_server(-1);
	}
	if (argc > 2 && strcmp(argv[1], "serve") == 0) {
		/* Standalone FastCGI socket, for spawn-fcgi-less set-ups and mod_proxy_fcgi. */
		const char *spec = NULL;
		for (int i = 2; i + 1 < argc; i++) {
			if (strcmp(argv[i], "--listen") == 0)
				spec = argv[i + 1];
		}
		if (!spec) {
			fprintf(stderr, "usage: llm-router serve --listen /path/to.sock|127.0.0.1:PORT (a unix socket gets mode 0660)\n");
			return 2;
		}
		if (fcgi_io_init() < 0)
			return 1;
		int fd = fcgi_io_listen(spec, 1024);
		if (fd < 0) {
			fprintf(stderr, "llm-router: cannot listen on %s: %s\n", spec, strerror(errno));
			return 1;
		}
		return run_server(fd);
	}
	return cli_main(argc, argv);
}
