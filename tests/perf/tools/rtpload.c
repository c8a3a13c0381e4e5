/*
 * rtpload: the two "phones" of N calls for the relay benchmark, in one process.
 *
 *   rtpload -n CALLS -t SECONDS [-r PPS] [-p PAYLOAD] [-g TICK_US] [-h 127.0.0.1]
 *
 * Phone side A of every call is one UDP socket SA, side B one socket SB; each side sends
 * from, and receives on, its one socket (symmetric RTP, as real phones do), so a relay that
 * latches sends back to them. Call i has two streams: A->B (SA -> relay leg A port, relayed
 * to SB) and B->A (SB -> relay leg B port, relayed to SA). Stream s carries SSRC
 * 0x5EED0000 + s, a 12-byte RTP header and PAYLOAD bytes (160 = G.711 20 ms) at PPS packets/s
 * (50 = 20 ms), stream phases spread evenly over one packet interval. The payload begins with
 * the CLOCK_MONOTONIC send time, so the receiver measures one-way latency.
 *
 * Protocol on stdio: prints "PORTS <sa> <sb>", reads the relay's 2*CALLS ports ("a b" per
 * call) from stdin, sends for SECONDS (prints "START"/"STOP"), keeps receiving until 1 s of
 * quiet (3 s at most), and prints one JSON line of results.
 *
 * The sender is paced by absolute time: every TICK_US (default 100 us) it sends what fell due,
 * with sendmmsg. Coarser ticks would hand the relay big bursts, which it serves with fewer
 * event-loop wake-ups than the independent, spread-out packets of real phones; at 100 us a
 * burst holds the few packets that independent phones would also bunch into that time. The
 * receiver thread drains both sockets with recvmmsg every 200 us. Both stay far below the
 * relay's per-packet cost.
 * Build: gcc -O2 -pthread -o rtpload rtpload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_PACKET 1500
#define SSRC_BASE 0x5EED0000u
#define LAT_BUCKET_US 50
#define LAT_BUCKETS 4000 /* 200 ms in 50 us steps; later arrivals go to the last bucket */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
    struct timespec ts = {(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static int open_socket(const char *host) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        exit(1);
    }
    int size = 16 << 20; /* root may exceed rmem_max; fall back to the plain option */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("bind");
        exit(1);
    }
    return fd;
}

static int local_port(int fd) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    return ntohs(sa.sin_port);
}

/* ------------------------------------------------------------------------- receiving */

struct receiver {
    int fds[2];            /* SA receives B->A (odd streams), SB receives A->B (even streams) */
    int streams;
    uint16_t *next_seq;    /* per stream: the sequence number expected next */
    uint8_t *seen;         /* per stream: anything received yet */
    uint64_t received[2];  /* per direction: 0 = A->B, 1 = B->A */
    uint64_t late, gaps, wrong_socket, foreign;
    uint64_t latency[LAT_BUCKETS];
    uint64_t lat_max_ns;
    atomic_int stop;
    atomic_uint_fast64_t last_packet_ns;
};

static void account(struct receiver *r, int socket_index, const uint8_t *p, ssize_t len,
                    uint64_t now) {
    if (len < 20 || (p[0] & 0xC0) != 0x80) {
        r->foreign++;
        return;
    }
    uint32_t ssrc = ((uint32_t)p[8] << 24) | ((uint32_t)p[9] << 16) | ((uint32_t)p[10] << 8) | p[11];
    uint32_t s = ssrc - SSRC_BASE;
    if (s >= (uint32_t)r->streams) {
        r->foreign++;
        return;
    }
    int direction = (int)(s & 1);
    if (socket_index != 1 - direction) r->wrong_socket++; /* A->B must arrive at SB */
    r->received[direction]++;
    uint16_t seq = (uint16_t)(((uint32_t)p[2] << 8) | p[3]);
    if (!r->seen[s]) {
        r->seen[s] = 1;
        r->next_seq[s] = (uint16_t)(seq + 1);
    } else {
        uint16_t ahead = (uint16_t)(seq - r->next_seq[s]);
        if (ahead < 0x8000) {
            r->gaps += ahead; /* numbers skipped; they may still come late */
            r->next_seq[s] = (uint16_t)(seq + 1);
        } else {
            r->late++;
        }
    }
    uint64_t sent;
    memcpy(&sent, p + 12, sizeof sent);
    uint64_t lat = now > sent ? now - sent : 0;
    if (lat > r->lat_max_ns) r->lat_max_ns = lat;
    uint64_t bucket = lat / 1000 / LAT_BUCKET_US;
    r->latency[bucket < LAT_BUCKETS ? bucket : LAT_BUCKETS - 1]++;
}

static void *receive_loop(void *arg) {
    struct receiver *r = arg;
    static uint8_t bufs[BATCH][MAX_PACKET];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = MAX_PACKET;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (!atomic_load(&r->stop)) {
        int got = 0;
        for (int k = 0; k < 2; k++) {
            for (;;) {
                int n = recvmmsg(r->fds[k], msgs, BATCH, MSG_DONTWAIT, NULL);
                if (n <= 0) break;
                uint64_t t = now_ns();
                for (int i = 0; i < n; i++) account(r, k, bufs[i], msgs[i].msg_len, t);
                got += n;
                if (n < BATCH) break;
            }
        }
        if (got) {
            atomic_store(&r->last_packet_ns, now_ns());
        } else {
            struct timespec pause = {0, 200000};
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

static double percentile_ms(const struct receiver *r, double q) {
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < LAT_BUCKETS; i++) total += r->latency[i];
    if (!total) return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    for (int i = 0; i < LAT_BUCKETS; i++) {
        acc += r->latency[i];
        if (acc > rank) return (i + 1) * LAT_BUCKET_US / 1000.0; /* upper edge of the bucket */
    }
    return LAT_BUCKETS * LAT_BUCKET_US / 1000.0;
}

/* --------------------------------------------------------------------------- sending */

struct batch {
    int fd, count;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint8_t bufs[BATCH][MAX_PACKET];
};

/* Send the batch; returns how many datagrams the kernel took, counting failures in errors. */
static uint64_t flush(struct batch *b, uint64_t *errors) {
    int done = 0;
    uint64_t failed = 0;
    while (done < b->count) {
        int n = sendmmsg(b->fd, b->msgs + done, (unsigned)(b->count - done), 0);
        if (n <= 0) {
            failed++; /* the first datagram failed: count it and move past it */
            n = 1;
        }
        done += n;
    }
    *errors += failed;
    uint64_t sent = (uint64_t)b->count - failed;
    b->count = 0;
    return sent;
}

int main(int argc, char **argv) {
    int calls = 0, payload = 160, tick_us = 100, opt;
    double pps = 50, seconds = 10;
    const char *host = "127.0.0.1";
    while ((opt = getopt(argc, argv, "n:t:r:p:g:h:")) != -1) {
        switch (opt) {
        case 'n': calls = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'r': pps = atof(optarg); break;
        case 'p': payload = atoi(optarg); break;
        case 'g': tick_us = atoi(optarg); break;
        case 'h': host = optarg; break;
        default:
            fprintf(stderr, "usage: %s -n calls -t seconds [-r pps] [-p payload] [-g tick_us] [-h host]\n",
                    argv[0]);
            return 2;
        }
    }
    if (calls <= 0 || payload < 8 || payload > MAX_PACKET - 12 || tick_us < 1) {
        fprintf(stderr, "need -n > 0, -g > 0 and 8 <= -p <= %d\n", MAX_PACKET - 12);
        return 2;
    }
    prctl(PR_SET_TIMERSLACK, 1000UL); /* wake within ~1 us, not the default 50 us, of a tick */
    int streams = 2 * calls;
    struct receiver *r = calloc(1, sizeof *r);
    r->streams = streams;
    r->next_seq = calloc((size_t)streams, sizeof *r->next_seq);
    r->seen = calloc((size_t)streams, 1);
    r->fds[0] = open_socket(host);
    r->fds[1] = open_socket(host);
    printf("PORTS %d %d\n", local_port(r->fds[0]), local_port(r->fds[1]));
    fflush(stdout);

    struct sockaddr_in *dst = calloc((size_t)streams, sizeof *dst);
    for (int i = 0; i < calls; i++) {
        int a, b;
        if (scanf("%d %d", &a, &b) != 2) {
            fprintf(stderr, "expected %d relay port pairs on stdin\n", calls);
            return 1;
        }
        for (int k = 0; k < 2; k++) {
            struct sockaddr_in *d = &dst[2 * i + k];
            d->sin_family = AF_INET;
            d->sin_port = htons((uint16_t)(k ? b : a));
            inet_pton(AF_INET, host, &d->sin_addr);
        }
    }

    pthread_t thread;
    pthread_create(&thread, NULL, receive_loop, r);

    static struct batch batches[2];
    for (int k = 0; k < 2; k++) {
        batches[k].fd = r->fds[k];
        for (int i = 0; i < BATCH; i++) {
            batches[k].iov[i].iov_base = batches[k].bufs[i];
            batches[k].iov[i].iov_len = (size_t)(12 + payload);
            batches[k].msgs[i].msg_hdr.msg_iov = &batches[k].iov[i];
            batches[k].msgs[i].msg_hdr.msg_iovlen = 1;
            batches[k].msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
            memset(batches[k].bufs[i], 0xD5, MAX_PACKET); /* A-law silence */
        }
    }

    uint64_t interval = (uint64_t)(1e9 / pps);
    uint64_t rounds = (uint64_t)(seconds * pps);
    uint64_t total = rounds * (uint64_t)streams;
    uint64_t sent[2] = {0, 0}, errors = 0, late_5ms = 0, max_late = 0;
    uint16_t *seq = calloc((size_t)streams, sizeof *seq);
    uint64_t t0 = now_ns() + 200000000ull; /* start in 200 ms */
    printf("START\n");
    fflush(stdout);
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    /* Packet g is stream g % streams of round g / streams, due at round * interval plus the
     * stream's phase. Wake at most every tick and send everything due by then. */
    uint64_t g = 0;
    while (g < total) {
        uint64_t now = now_ns();
        for (; g < total; g++) {
            int s = (int)(g % (uint64_t)streams);
            uint64_t due = t0 + (g / (uint64_t)streams) * interval + (uint64_t)s * interval / (uint64_t)streams;
            if (due > now) break;
            if (now - due > max_late) max_late = now - due;
            if (now - due > 5000000ull) late_5ms++;
            int side = s & 1; /* even streams leave from SA, odd from SB */
            struct batch *b = &batches[side];
            uint8_t *p = b->bufs[b->count];
            uint32_t ts = htonl((uint32_t)(g / (uint64_t)streams) * 160u);
            uint32_t ssrc = htonl(SSRC_BASE + (uint32_t)s);
            p[0] = 0x80;
            p[1] = 8; /* PCMA */
            p[2] = (uint8_t)(seq[s] >> 8);
            p[3] = (uint8_t)seq[s];
            memcpy(p + 4, &ts, 4);
            memcpy(p + 8, &ssrc, 4);
            uint64_t stamp = now_ns();
            memcpy(p + 12, &stamp, 8);
            seq[s]++;
            b->msgs[b->count].msg_hdr.msg_name = &dst[s];
            if (++b->count == BATCH) sent[side] += flush(b, &errors);
        }
        for (int k = 0; k < 2; k++)
            if (batches[k].count) sent[k] += flush(&batches[k], &errors);
        if (g < total) {
            uint64_t next = t0 + (g / (uint64_t)streams) * interval +
                            (g % (uint64_t)streams) * interval / (uint64_t)streams;
            uint64_t soonest = now_ns() + (uint64_t)tick_us * 1000ull;
            sleep_until(next > soonest ? next : soonest);
        }
    }
    uint64_t wall = now_ns() - t0;
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    printf("STOP\n");
    fflush(stdout);

    /* Drain: stop after 1 s without a packet, or 3 s at most. */
    uint64_t end = now_ns();
    atomic_store(&r->last_packet_ns, end);
    while (now_ns() - atomic_load(&r->last_packet_ns) < 1000000000ull && now_ns() - end < 3000000000ull) {
        struct timespec pause = {0, 50000000};
        nanosleep(&pause, NULL);
    }
    atomic_store(&r->stop, 1);
    pthread_join(thread, NULL);

    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    printf("{\"calls\": %d, \"sent_ab\": %llu, \"sent_ba\": %llu, \"received_ab\": %llu, "
           "\"received_ba\": %llu, \"send_errors\": %llu, \"gaps\": %llu, \"late\": %llu, "
           "\"wrong_socket\": %llu, \"foreign\": %llu, \"lat_p50_ms\": %.2f, \"lat_p99_ms\": %.2f, "
           "\"lat_p999_ms\": %.2f, \"lat_max_ms\": %.2f, \"pacing_max_late_ms\": %.2f, "
           "\"pacing_late_5ms\": %llu, \"tick_us\": %d, \"send_wall_s\": %.3f, \"cpu_s\": %.3f, "
           "\"ports\": [%d, %d]}\n",
           calls, (unsigned long long)sent[0], (unsigned long long)sent[1],
           (unsigned long long)r->received[0], (unsigned long long)r->received[1],
           (unsigned long long)errors, (unsigned long long)r->gaps, (unsigned long long)r->late,
           (unsigned long long)r->wrong_socket, (unsigned long long)r->foreign,
           percentile_ms(r, 0.50), percentile_ms(r, 0.99), percentile_ms(r, 0.999),
           (double)r->lat_max_ns / 1e6, (double)max_late / 1e6, (unsigned long long)late_5ms,
           tick_us, (double)wall / 1e9, cpu, local_port(r->fds[0]), local_port(r->fds[1]));
    fflush(stdout);
    return 0;
}
