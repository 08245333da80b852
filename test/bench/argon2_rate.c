/*
 * argon2_rate.c
 *		The baseline of the hashing benchmarks: how many argon2id hashes per
 *		second libargon2 computes in N threads, with the same parameters the
 *		extension uses, computed in each thread (threads = 1 per hash).
 *
 *		argon2_rate THREADS SECONDS MEMORY_KIB ITERATIONS LANES [sodium]
 *		prints: hashes/s
 *
 *		With "sodium", the hashes are computed by libsodium's argon2id
 *		(crypto_pwhash, lanes = 1 only) instead: the comparison that decides
 *		which library the extension should use for parallelism-1 hashes.
 */
#include <argon2.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint32_t m_cost, t_cost, lanes;
static double seconds;
static int	use_sodium;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
run(void *arg)
{
	long	   *count = arg;
	uint8_t		salt[16] = "0123456789abcdef";
	uint8_t		out[32];
	char		pwd[32];
	double		end = now() + seconds;

	while (now() < end)
	{
		argon2_context ctx;
		int			n = snprintf(pwd, sizeof(pwd), "password %ld", *count);

		if (use_sodium)
		{
			if (crypto_pwhash(out, sizeof(out), pwd, (unsigned long long) n, salt,
							  t_cost, (size_t) m_cost * 1024,
							  crypto_pwhash_ALG_ARGON2ID13) != 0)
			{
				fprintf(stderr, "crypto_pwhash failed\n");
				exit(1);
			}
			(*count)++;
			continue;
		}
		memset(&ctx, 0, sizeof(ctx));
		ctx.out = out;
		ctx.outlen = sizeof(out);
		ctx.pwd = (uint8_t *) pwd;
		ctx.pwdlen = (uint32_t) n;
		ctx.salt = salt;
		ctx.saltlen = sizeof(salt);
		ctx.t_cost = t_cost;
		ctx.m_cost = m_cost;
		ctx.lanes = lanes;
		ctx.threads = 1;
		ctx.version = ARGON2_VERSION_13;
		if (argon2_ctx(&ctx, Argon2_id) != ARGON2_OK)
		{
			fprintf(stderr, "argon2_ctx failed\n");
			exit(1);
		}
		(*count)++;
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	int			nthreads;
	pthread_t  *threads;
	long	   *counts;
	long		total = 0;
	double		start;

	if (argc != 6 && !(argc == 7 && strcmp(argv[6], "sodium") == 0))
	{
		fprintf(stderr, "usage: %s THREADS SECONDS MEMORY_KIB ITERATIONS LANES [sodium]\n", argv[0]);
		return 2;
	}
	use_sodium = argc == 7;
	if (use_sodium && (sodium_init() < 0 || atol(argv[5]) != 1))
	{
		fprintf(stderr, "libsodium: cannot initialise, or LANES is not 1\n");
		return 2;
	}
	nthreads = atoi(argv[1]);
	seconds = atof(argv[2]);
	m_cost = (uint32_t) atol(argv[3]);
	t_cost = (uint32_t) atol(argv[4]);
	lanes = (uint32_t) atol(argv[5]);
	threads = calloc(nthreads, sizeof(pthread_t));
	counts = calloc(nthreads, sizeof(long));

	start = now();
	for (int i = 0; i < nthreads; i++)
		pthread_create(&threads[i], NULL, run, &counts[i]);
	for (int i = 0; i < nthreads; i++)
	{
		pthread_join(threads[i], NULL);
		total += counts[i];
	}
	printf("%.1f\n", total / (now() - start));
	return 0;
}
