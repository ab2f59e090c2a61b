/* A TCP forwarder for the local cluster (scripts/k8s-local.sh packs it as the image
 * localhost/cola/forward): `forward LISTEN_IP:PORT TARGET_IP:PORT` accepts connections on the
 * first address and copies bytes both ways to the second, a process per connection.
 *
 * The local overlay (k8s/overlays/local) runs it beside the gateway so that the test OpenID
 * provider, which listens on this machine, is reachable from inside the Pod at the same
 * loopback issuer URL (http://localhost:<port>) that the browser uses on this machine: the
 * gateway accepts plain http only for a loopback issuer. Stands in for the HTTPS a real
 * provider (Google) serves; nothing of it is in the production manifests. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int parse(const char *text, struct sockaddr_in *address) {
  char host[64];
  const char *colon = strrchr(text, ':');
  if (!colon || (size_t)(colon - text) >= sizeof host) return -1;
  memcpy(host, text, (size_t)(colon - text));
  host[colon - text] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port > 65535) return -1;
  memset(address, 0, sizeof *address);
  address->sin_family = AF_INET;
  address->sin_port = htons((unsigned short)port);
  return inet_pton(AF_INET, host, &address->sin_addr) == 1 ? 0 : -1;
}

/* Copies both ways until both sides have closed. */
static void relay(int client, const struct sockaddr_in *target) {
  int upstream = socket(AF_INET, SOCK_STREAM, 0);
  if (upstream < 0 || connect(upstream, (const struct sockaddr *)target, sizeof *target) < 0) {
    perror("forward: connect");
    _exit(1);
  }
  const int sockets[2] = {client, upstream};
  struct pollfd fds[2] = {{.fd = client, .events = POLLIN}, {.fd = upstream, .events = POLLIN}};
  int open_sides = 2;
  char buffer[16384];
  while (open_sides > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      int other = sockets[1 - i];
      if (n <= 0) {
        shutdown(other, SHUT_WR);
        fds[i].fd = -1;
        open_sides--;
        continue;
      }
      for (ssize_t sent = 0; sent < n;) {
        ssize_t w = write(other, buffer + sent, (size_t)(n - sent));
        if (w <= 0) _exit(0);
        sent += w;
      }
    }
  }
  _exit(0);
}

static void stop(int signal_number) {
  (void)signal_number;
  _exit(0);
}

int main(int argc, char **argv) {
  struct sockaddr_in listen_address, target;
  if (argc != 3 || parse(argv[1], &listen_address) || parse(argv[2], &target)) {
    fprintf(stderr, "usage: forward LISTEN_IP:PORT TARGET_IP:PORT\n");
    return 2;
  }
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  int server = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (server < 0 || bind(server, (struct sockaddr *)&listen_address, sizeof listen_address) < 0 ||
      listen(server, 64) < 0) {
    perror("forward: listen");
    return 1;
  }
  fprintf(stderr, "forward: %s -> %s\n", argv[1], argv[2]);
  for (;;) {
    int client = accept(server, NULL, NULL);
    if (client < 0) continue;
    pid_t pid = fork();
    if (pid == 0) {
      close(server);
      relay(client, &target);
    }
    close(client);
  }
}
