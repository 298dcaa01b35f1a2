/* tgw-nice-srflx: a libnice agent that gathers candidates against one STUN server and prints
 * its server-reflexive candidates, for the lab's RFC 3489 interop test (stun_classic_test.cpp).
 * libnice 0.1.21 (Debian 12) discovers server-reflexive candidates with RFC 3489 ("classic")
 * Binding requests: no magic cookie, a 16-byte transaction id, no attributes.
 *
 * Usage: tgw-nice-srflx SERVER_IP SERVER_PORT [LOCAL_IP] [TIMEOUT_SECONDS]
 * Prints one line per server-reflexive candidate, "srflx udp|tcp ADDR PORT base ADDR PORT", then
 * "done"; exits 0 with at least one, 1 with none (or at the timeout, default 10 s), 2 on bad
 * arguments. LOCAL_IP restricts gathering to that local address (else every interface). */
#include <nice/agent.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static GMainLoop *loop;
static int found;
static int timed_out;

static void print_candidates(NiceAgent *agent, guint stream_id) {
  GSList *cands = nice_agent_get_local_candidates(agent, stream_id, NICE_COMPONENT_TYPE_RTP);
  for (GSList *i = cands; i != NULL; i = i->next) {
    const NiceCandidate *c = i->data;
    if (c->type != NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE) continue;
    char addr[NICE_ADDRESS_STRING_LEN], base[NICE_ADDRESS_STRING_LEN];
    nice_address_to_string(&c->addr, addr);
    nice_address_to_string(&c->base_addr, base);
    printf("srflx %s %s %u base %s %u\n", c->transport == NICE_CANDIDATE_TRANSPORT_UDP ? "udp" : "tcp", addr,
           nice_address_get_port(&c->addr), base,
           nice_address_get_port(&c->base_addr));
    found++;
  }
  g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
}

static void on_gathering_done(NiceAgent *agent, guint stream_id, gpointer data) {
  (void)data;
  print_candidates(agent, stream_id);
  g_main_loop_quit(loop);
}

static gboolean on_timeout(gpointer data) {
  (void)data;
  timed_out = 1;
  g_main_loop_quit(loop);
  return G_SOURCE_REMOVE;
}

/* Gathering needs a receive callback attached; nothing arrives but STUN, which libnice eats. */
static void on_recv(NiceAgent *agent, guint stream_id, guint component_id, guint len, gchar *buf,
                    gpointer data) {
  (void)agent, (void)stream_id, (void)component_id, (void)len, (void)buf, (void)data;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 5) {
    fprintf(stderr, "usage: %s SERVER_IP SERVER_PORT [LOCAL_IP] [TIMEOUT_SECONDS]\n", argv[0]);
    return 2;
  }
  const char *server = argv[1];
  const long port = strtol(argv[2], NULL, 10);
  const char *local = argc >= 4 && argv[3][0] != '\0' ? argv[3] : NULL;
  const long timeout = argc == 5 ? strtol(argv[4], NULL, 10) : 10;
  if (port <= 0 || port > 65535 || timeout <= 0 || timeout > 600) {
    fprintf(stderr, "bad port or timeout\n");
    return 2;
  }

  loop = g_main_loop_new(NULL, FALSE);
  NiceAgent *agent = nice_agent_new(g_main_loop_get_context(loop), NICE_COMPATIBILITY_RFC5245);
  g_object_set(agent, "stun-server", server, "stun-server-port", (guint)port, NULL);
  /* No UPnP-IGD search (it would only delay the end of gathering), where libnice has it. */
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(agent), "upnp"))
    g_object_set(agent, "upnp", FALSE, NULL);
  /* UDP candidates only: STUN over UDP is what is tested. */
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(agent), "ice-tcp"))
    g_object_set(agent, "ice-tcp", FALSE, NULL);
  if (local) {
    NiceAddress addr;
    nice_address_init(&addr);
    if (!nice_address_set_from_string(&addr, local)) {
      fprintf(stderr, "bad local address %s\n", local);
      return 2;
    }
    nice_agent_add_local_address(agent, &addr);
  }
  g_signal_connect(agent, "candidate-gathering-done", G_CALLBACK(on_gathering_done), NULL);
  const guint stream = nice_agent_add_stream(agent, 1);
  nice_agent_attach_recv(agent, stream, NICE_COMPONENT_TYPE_RTP, g_main_loop_get_context(loop), on_recv,
                         NULL);
  if (!nice_agent_gather_candidates(agent, stream)) {
    fprintf(stderr, "gathering failed to start\n");
    return 1;
  }
  g_timeout_add_seconds((guint)timeout, on_timeout, NULL);
  g_main_loop_run(loop);
  if (timed_out) fprintf(stderr, "timed out after %ld s before gathering was done\n", timeout);
  printf("done\n");
  fflush(stdout);
  g_object_unref(agent);
  g_main_loop_unref(loop);
  return found > 0 ? 0 : 1;
}
