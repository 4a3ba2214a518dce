/*
 * test_push.c — push delivery's pure parts: the Standard Webhooks signature
 * against the spec's test vector (and what breaks it), secret decoding,
 * the outcome classification (2xx acks; transport errors, 3xx, 4xx, 5xx
 * and 410 are failed attempts with a text; Retry-After on 429/503 sets the
 * delay), the deny_private address check and push URL validation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>

#include "push.h"
#include "push_outcome.h"
#include "push_sign.h"

/* The Standard Webhooks test vector (webhook_test.go). */
#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID	   "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS	   1614265330u
#define VEC_BODY   "{\"test\": 2432232314}"
#define VEC_SIG	   "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void sign_vec(const char *secret, const char *id, uint64_t ts,
		     const char *body, char sig[PUSH_SIG_MAX])
{
	uint8_t key[PUSH_KEY_MAX];
	size_t len = 0;
	assert_int_equal(push_secret_decode(secret, key, &len), 0);
	push_sign(key, len, id, ts, body, strlen(body), sig);
}

static void test_signature_matches_spec_vector(void **state)
{
	(void)state;
	char sig[PUSH_SIG_MAX];
	sign_vec(VEC_SECRET, VEC_ID, VEC_TS, VEC_BODY, sig);
	assert_string_equal(sig, VEC_SIG);
}

/* Any change of id, timestamp or body changes the signature. */
static void test_signature_covers_id_timestamp_body(void **state)
{
	(void)state;
	char sig[PUSH_SIG_MAX];
	sign_vec(VEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJeK", VEC_TS, VEC_BODY,
		 sig);
	assert_string_not_equal(sig, VEC_SIG);
	sign_vec(VEC_SECRET, VEC_ID, VEC_TS + 1, VEC_BODY, sig);
	assert_string_not_equal(sig, VEC_SIG);
	sign_vec(VEC_SECRET, VEC_ID, VEC_TS, "{\"test\": 2432232315}", sig);
	assert_string_not_equal(sig, VEC_SIG);
}

static void test_secret_decoding(void **state)
{
	(void)state;
	uint8_t key[PUSH_KEY_MAX];
	size_t len = 0;
	assert_int_equal(push_secret_decode(VEC_SECRET, key, &len), 0);
	assert_int_equal(len, 24);
	/* no prefix, bad base64, too short, too long */
	assert_int_not_equal(
		push_secret_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key,
				   &len),
		0);
	assert_int_not_equal(push_secret_decode("whsec_!!!!", key, &len), 0);
	assert_int_not_equal(push_secret_decode("whsec_AAAA", key, &len), 0);
	char big[200] = "whsec_";
	memset(big + 6, 'A', 120); /* 90 bytes */
	assert_int_not_equal(push_secret_decode(big, key, &len), 0);
	assert_int_not_equal(push_secret_decode(NULL, key, &len), 0);
}

static struct push_outcome classify(int transport, long status,
				    long retry_after, const char *line)
{
	struct push_result r = { .transport = transport,
				 .transport_error = "curl says why",
				 .timeout_ms = 2000,
				 .status = status,
				 .retry_after_s = retry_after,
				 .body_line = line };
	struct push_outcome o;
	push_classify(&r, &o);
	return o;
}

static void test_2xx_acks(void **state)
{
	(void)state;
	long ok[] = { 200, 201, 202, 204, 299 };
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		struct push_outcome o = classify(0, ok[i], 0, "");
		assert_int_equal(o.action, PUSH_ACK);
		assert_false(o.connection_failure);
	}
}

/* Every other status is a failed attempt naming the status and the first
 * line of the body; none is a connection failure. */
static void test_other_statuses_fail_with_text(void **state)
{
	(void)state;
	long bad[] = { 100, 301, 302, 400, 401, 404, 409, 422, 500, 502, 504 };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct push_outcome o = classify(0, bad[i], 0, "nope");
		char want[32];
		snprintf(want, sizeof want, "HTTP %ld", bad[i]);
		assert_int_equal(o.action, PUSH_NACK);
		assert_false(o.connection_failure);
		assert_int_equal(o.delay_ms, 0);
		assert_non_null(strstr(o.text, want));
		assert_non_null(strstr(o.text, "nope"));
	}
	struct push_outcome o = classify(0, 302, 0, "");
	assert_non_null(strstr(o.text, "redirect not followed"));
	o = classify(0, 500, 0, "");
	assert_string_equal(o.text, "HTTP 500");
}

static void test_retry_after_on_429_and_503(void **state)
{
	(void)state;
	struct push_outcome o = classify(0, 503, 2, "busy");
	assert_int_equal(o.action, PUSH_NACK);
	assert_int_equal(o.delay_ms, 2000);
	o = classify(0, 429, 7, "");
	assert_int_equal(o.delay_ms, 7000);
	/* capped; negative (a past date) and absent mean the backoff */
	o = classify(0, 503, 100000, "");
	assert_int_equal(o.delay_ms, PUSH_RETRY_AFTER_MAX_S * 1000u);
	o = classify(0, 503, -5, "");
	assert_int_equal(o.delay_ms, 0);
	o = classify(0, 503, 0, "");
	assert_int_equal(o.delay_ms, 0);
	/* only 429 and 503 */
	o = classify(0, 500, 9, "");
	assert_int_equal(o.delay_ms, 0);
}

static void test_410_is_gone(void **state)
{
	(void)state;
	struct push_outcome o = classify(0, 410, 0, "");
	assert_int_equal(o.action, PUSH_NACK);
	assert_true(o.gone);
	assert_string_equal(o.text,
			    "410 Gone: endpoint gone; subscription paused");
}

/* No transport error is "not retryable": each is a failed attempt and a
 * connection failure, with a text saying what happened. */
static void test_transport_errors_fail(void **state)
{
	(void)state;
	static const struct {
		int code;
		const char *kind;
	} cases[] = {
		{ 6, "DNS failure" },	     { 7, "connection failed" },
		{ 28, "timeout" },	     { 35, "TLS failure" },
		{ 60, "TLS failure" },	     { 52, "connection closed" },
		{ 56, "connection broken" }, { 1, "transport error" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct push_outcome o = classify(cases[i].code, 0, 0, "");
		assert_int_equal(o.action, PUSH_NACK);
		assert_true(o.connection_failure);
		assert_int_equal(o.delay_ms, 0);
		assert_non_null(strstr(o.text, cases[i].kind));
		assert_non_null(strstr(o.text, "curl says why"));
	}
	struct push_outcome o = classify(28, 0, 0, "");
	assert_non_null(strstr(o.text, "2000 ms"));
	struct push_result r = { .address_denied = true, .transport = 7 };
	push_classify(&r, &o);
	assert_true(o.connection_failure);
	assert_non_null(strstr(o.text, "deny_private"));
}

static bool private4(const char *a)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	assert_int_equal(inet_pton(AF_INET, a, &in.sin_addr), 1);
	return push_address_private((struct sockaddr *)&in);
}

static bool private6(const char *a)
{
	struct sockaddr_in6 in = { .sin6_family = AF_INET6 };
	assert_int_equal(inet_pton(AF_INET6, a, &in.sin6_addr), 1);
	return push_address_private((struct sockaddr *)&in);
}

static void test_private_addresses(void **state)
{
	(void)state;
	const char *deny4[] = { "127.0.0.1",   "10.1.2.3",
				"172.16.0.1",  "172.31.255.1",
				"192.168.1.1", "169.254.169.254",
				"0.0.0.0",     "100.64.0.1",
				"224.0.0.1",   "255.255.255.255" };
	const char *allow4[] = { "8.8.8.8", "172.32.0.1", "192.169.0.1",
				 "1.1.1.1", "100.128.0.1" };
	for (size_t i = 0; i < sizeof deny4 / sizeof *deny4; i++)
		assert_true(private4(deny4[i]));
	for (size_t i = 0; i < sizeof allow4 / sizeof *allow4; i++)
		assert_false(private4(allow4[i]));
	assert_true(private6("::1"));
	assert_true(private6("::"));
	assert_true(private6("fe80::1"));
	assert_true(private6("fd00::1"));
	assert_true(private6("ff02::1"));
	assert_true(private6("::ffff:127.0.0.1")); /* mapped: unwrapped */
	assert_true(private6("::ffff:10.0.0.1"));
	assert_false(private6("::ffff:8.8.8.8"));
	assert_false(private6("2001:4860:4860::8888"));
}

static void test_url_check(void **state)
{
	(void)state;
	assert_null(push_url_problem("http://example.com/hook"));
	assert_null(push_url_problem("https://127.0.0.1:8443/x?y=1"));
	assert_null(push_url_problem("HTTPS://Example.com"));
	assert_non_null(push_url_problem("ftp://example.com/"));
	assert_non_null(push_url_problem("file:///etc/passwd"));
	assert_non_null(push_url_problem("gopher://x"));
	assert_non_null(push_url_problem("http://"));
	assert_non_null(push_url_problem("http:///path"));
	assert_non_null(push_url_problem("http://exa mple.com/"));
	assert_non_null(push_url_problem("http://example.com/\r\nX: y"));
	assert_non_null(push_url_problem("example.com"));
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signature_matches_spec_vector),
		cmocka_unit_test(test_signature_covers_id_timestamp_body),
		cmocka_unit_test(test_secret_decoding),
		cmocka_unit_test(test_2xx_acks),
		cmocka_unit_test(test_other_statuses_fail_with_text),
		cmocka_unit_test(test_retry_after_on_429_and_503),
		cmocka_unit_test(test_410_is_gone),
		cmocka_unit_test(test_transport_errors_fail),
		cmocka_unit_test(test_private_addresses),
		cmocka_unit_test(test_url_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
