/*
 * test_connlimit.c - concurrent connection caps: per address, total,
 * release, and counting from several threads at once.
 */
#include <pthread.h>
#include <stdio.h>

#include <criterion/criterion.h>

#include "connlimit.h"

Test(connlimit, per_ip_cap_and_release)
{
	const char *which = NULL;

	for (int i = 0; i < 3; i++)
		cr_assert(connlimit_acquire("192.0.2.1", 0, 3, &which));
	cr_assert(!connlimit_acquire("192.0.2.1", 0, 3, &which));
	cr_assert_str_eq(which, "per_ip");
	cr_assert(connlimit_acquire("192.0.2.2", 0, 3, NULL), "another address has its own count");
	connlimit_release("192.0.2.1");
	cr_assert(connlimit_acquire("192.0.2.1", 0, 3, NULL));
	for (int i = 0; i < 3; i++)
		connlimit_release("192.0.2.1");
	connlimit_release("192.0.2.2");
	/* All gone: the address starts from zero again. */
	for (int i = 0; i < 3; i++)
		cr_assert(connlimit_acquire("192.0.2.1", 0, 3, NULL));
}

Test(connlimit, total_cap)
{
	const char *which = NULL;
	char ip[32];

	for (int i = 0; i < 5; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", i);
		cr_assert(connlimit_acquire(ip, 5, 0, NULL));
	}
	cr_assert(!connlimit_acquire("203.0.113.9", 5, 0, &which));
	cr_assert_str_eq(which, "total");
	connlimit_release("198.51.100.0");
	cr_assert(connlimit_acquire("203.0.113.9", 5, 0, NULL));
	/* A refusal counted nothing. */
	cr_assert(!connlimit_acquire("203.0.113.10", 5, 0, NULL));
	connlimit_release("203.0.113.9");
	cr_assert(connlimit_acquire("203.0.113.10", 5, 0, NULL));
}

static void *worker(void *arg)
{
	char ip[32];

	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 50; i++) {
			snprintf(ip, sizeof(ip), "10.%d.0.%d", (int)(long)arg, i);
			cr_assert(connlimit_acquire(ip, 0, 1, NULL));
		}
		for (int i = 0; i < 50; i++) {
			snprintf(ip, sizeof(ip), "10.%d.0.%d", (int)(long)arg, i);
			connlimit_release(ip);
		}
	}
	return NULL;
}

Test(connlimit, threads_count_exactly)
{
	pthread_t t[4];

	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	/* Everything was released: a cap of 1 admits each address once more. */
	cr_assert(connlimit_acquire("10.0.0.0", 1, 1, NULL));
	cr_assert(!connlimit_acquire("10.0.0.0", 0, 1, NULL));
}
