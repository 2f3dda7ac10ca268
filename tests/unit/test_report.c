/* test_report.c - the spend report's CSV fields, JSON strings and whole documents. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "report.h"

/* What fn writes for s, as a NUL-terminated string the caller frees. */
static char *written(void (*fn)(FILE *, const char *), const char *s)
{
	char *p = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&p, &n);
	fn(f, s);
	fclose(f);
	return p;
}

TEST(report_csv_field_table)
{
	static const struct {
		const char *in, *out;
	} rows[] = {
		{ "", "" },
		{ "gpt-4o-mini", "gpt-4o-mini" },
		{ "with space", "with space" },
		{ "a,b", "\"a,b\"" },
		{ "say \"hi\"", "\"say \"\"hi\"\"\"" },
		{ "\"", "\"\"\"\"" },
		{ "line\nbreak", "\"line\nbreak\"" },
		{ "cr\rlf\r\n", "\"cr\rlf\r\n\"" },
		{ "odd, \"model\"\r\nname", "\"odd, \"\"model\"\"\r\nname\"" },
		{ "caf\xC3\xA9", "caf\xC3\xA9" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].in);
		char *got = written(report_csv_field, rows[i].in);
		CHECK_STR_EQ(got, rows[i].out);
		free(got);
	}
	test_case(NULL);
}

TEST(report_json_string_table)
{
	static const struct {
		const char *in, *out;
	} rows[] = {
		{ "", "\"\"" },
		{ "T1", "\"T1\"" },
		{ "say \"hi\" \\o/", "\"say \\\"hi\\\" \\\\o/\"" },
		{ "a\r\nb\tc", "\"a\\r\\nb\\tc\"" },
		{ "\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"" },
		{ "caf\xC3\xA9", "\"caf\xC3\xA9\"" },
		{ "bad\xFFutf8", "\"bad?utf8\"" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].in);
		char *got = written(report_json_string, rows[i].in);
		CHECK_STR_EQ(got, rows[i].out);
		free(got);
	}
	test_case(NULL);
}

/* A report by tier of two rows, one tier with a budget, in each format. */
static char *tier_report(enum report_format format)
{
	static char t1[] = "T1", t2[] = "T2", n1[] = "Strategic", n2[] = "Ops";
	struct tier_conf tiers[2];
	memset(tiers, 0, sizeof(tiers));
	tiers[0].id = t1;
	tiers[0].name = n1;
	tiers[0].daily_budget_usd = 2.5;
	tiers[1].id = t2;
	tiers[1].name = n2;
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.tiers = tiers;
	cfg.n_tiers = 2;
	char *p = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&p, &n);
	struct report_out r = { .f = f, .format = format, .cfg = &cfg, .by = "tier",
				.from_day = "2026-03-01", .to_day = "2026-03-02", .days = 2 };
	struct report_row rows[] = {
		{ .key = "T1", .calls = 3, .input_tokens = 30, .output_tokens = 12,
		  .cost_nusd = 1250000000, .errors = 1 },
		{ .key = "T2", .calls = 1, .input_tokens = 5, .output_tokens = 7, .cost_nusd = 123,
		  .errors = 0 },
	};
	report_begin(&r);
	for (size_t i = 0; i < 2; i++)
		report_add_row(&r, &rows[i]);
	report_end(&r);
	fclose(f);
	return p;
}

TEST(report_formats)
{
	char *text = tier_report(REPORT_TEXT);
	CHECK_STR_EQ(text,
		     "Spend 2026-03-01 to 2026-03-02 (UTC) by tier\n"
		     "tier                            calls    input_tok   output_tok            usd  errors budget_usd   used\n"
		     "T1                                  3           30           12       1.250000       1       5.00   25.0%\n"
		     "T2                                  1            5            7       0.000000       0 \n"
		     "total                               4                                 1.250000\n");
	char *json = tier_report(REPORT_JSON);
	CHECK_STR_EQ(json,
		     "{\n  \"from\": \"2026-03-01\",\n  \"to\": \"2026-03-02\",\n  \"days\": 2,\n  \"by\": \"tier\",\n"
		     "  \"rows\": [\n"
		     "    {\"tier\": \"T1\", \"calls\": 3, \"input_tokens\": 30, \"output_tokens\": 12, \"usd\": 1.250000000, \"errors\": 1, \"budget_usd\": 5, \"used_percent\": 25.0000},\n"
		     "    {\"tier\": \"T2\", \"calls\": 1, \"input_tokens\": 5, \"output_tokens\": 7, \"usd\": 0.000000123, \"errors\": 0, \"budget_usd\": null, \"used_percent\": null}\n"
		     "  ],\n"
		     "  \"total\": {\"calls\": 4, \"input_tokens\": 35, \"output_tokens\": 19, \"usd\": 1.250000123, \"errors\": 1}\n}\n");
	char *csv = tier_report(REPORT_CSV);
	CHECK_STR_EQ(csv, "tier,calls,input_tokens,output_tokens,usd,errors,budget_usd,used_percent\r\n"
			  "T1,3,30,12,1.250000000,1,5,25.0000\r\n"
			  "T2,1,5,7,0.000000123,0,,\r\n");
	free(text);
	free(json);
	free(csv);
}

TEST(report_format_names)
{
	enum report_format f = REPORT_CSV;
	CHECK_INT_EQ(report_format_parse("text", &f), 0);
	CHECK_INT_EQ(f, REPORT_TEXT);
	CHECK_INT_EQ(report_format_parse("json", &f), 0);
	CHECK_INT_EQ(f, REPORT_JSON);
	CHECK_INT_EQ(report_format_parse("csv", &f), 0);
	CHECK_INT_EQ(f, REPORT_CSV);
	CHECK_INT_EQ(report_format_parse("JSON", &f), -1);
	CHECK_INT_EQ(report_format_parse("", &f), -1);
	CHECK_INT_EQ(f, REPORT_CSV);
}
