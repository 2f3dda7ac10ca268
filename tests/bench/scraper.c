/* scraper.c - what Prometheus does to the router during the bench's router_scraped runs, at the
 * cost of one small process: GET a URL with a bearer token once a second (each scrape starts a
 * second after the previous one started, or at once after a scrape that took longer), a new
 * HTTP/1.1 connection each time, and a line per scrape on stdout: HTTP status (000: no answer),
 * seconds, bytes of body, and a tag. A shell loop of curl, date and sleep would spawn five
 * processes a second on the load CPU, which is enough to show in the load generator's p99 at
 * concurrency 1: that would be the scraper's cost, not the router's.
 *
 * Usage: scraper HOST PORT PATH TOKEN TAG   (until SIGTERM; a scrape in progress is finished)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One scrape: the status (0 without an answer) and the body's bytes. */
static int scrape(const struct sockaddr_in *sa, const char *host, const char *path, const char *token,
		  long *body)
{
	*body = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char req[1024];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
			 "Accept: text/plain\r\nConnection: close\r\n\r\n", path, host, token);
	int status = 0;
	if (n > 0 && (size_t)n < sizeof(req) && connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 &&
	    write(fd, req, (size_t)n) == n) {
		static char buf[1 << 16];
		long total = 0, head = -1;
		ssize_t got;
		/* The head is in the first 64 KiB; what follows is only counted. */
		/* A read with SO_RCVTIMEO is not restarted after SIGTERM's handler: read again. */
		while ((got = read(fd, buf + (total < (long)sizeof(buf) ? total : 0),
				   total < (long)sizeof(buf) ? sizeof(buf) - (size_t)total : sizeof(buf))) > 0 ||
		       (got < 0 && errno == EINTR)) {
			if (got < 0)
				continue;
			if (total < (long)sizeof(buf) && head < 0) {
				char *end = memmem(buf, (size_t)(total + got), "\r\n\r\n", 4);
				if (end) {
					head = end - buf + 4;
					if (strncmp(buf, "HTTP/1.", 7) == 0 && total + got >= 12)
						status = atoi(buf + 9);
				}
			}
			total += got;
		}
		*body = head >= 0 ? total - head : 0;
	}
	if (!status)
		fprintf(stderr, "scraper: no answer (%s)\n", strerror(errno));
	close(fd);
	return status;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: scraper HOST PORT PATH TOKEN TAG\n");
		return 2;
	}
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "scraper: %s is not an IPv4 address\n", argv[1]);
		return 2;
	}
	struct sigaction act = { .sa_handler = on_term, .sa_flags = SA_RESTART };
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	double next = now_s();
	while (!stop) {
		double t0 = now_s();
		long body;
		int status = scrape(&sa, argv[1], argv[3], argv[4], &body);
		printf("%03d %.6f %ld %s\n", status, now_s() - t0, body, argv[5]);
		next += 1.0;
		double wait = next - now_s();
		if (wait <= 0) {
			next = now_s();
			continue;
		}
		struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
		while (!stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return 0;
}
