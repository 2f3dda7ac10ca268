/* report.c - the spend report's three formats (see report.h).
 *
 * Rows are written as they come, nothing is held but the totals, so a report of many groups (a
 * model per distinct requested name) costs no memory. Costs are integers of nano-USD in the
 * store; JSON and CSV print them exactly (9 decimals), the text table rounds to 6 as it always did.
 * No locale is set in the command-line tool, so printf's decimal point is '.'.
 */
#include "report.h"

#include <string.h>

#include "util.h"

int report_format_parse(const char *name, enum report_format *out)
{
	static const struct {
		const char *name;
		enum report_format format;
	} names[] = { { "text", REPORT_TEXT }, { "json", REPORT_JSON }, { "csv", REPORT_CSV } };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i].name) == 0) {
			*out = names[i].format;
			return 0;
		}
	return -1;
}

void report_csv_field(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void report_json_string(FILE *f, const char *s)
{
	char *copy = xstrdup(s);
	utf8_sanitize(copy);
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)copy; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
	free(copy);
}

/* The exact amount in USD of a cost in nano-USD, 9 decimals. */
static void put_usd(FILE *f, int64_t nusd)
{
	uint64_t a = nusd < 0 ? -(uint64_t)nusd : (uint64_t)nusd;
	fprintf(f, "%s%llu.%09llu", nusd < 0 ? "-" : "", (unsigned long long)(a / 1000000000u),
		(unsigned long long)(a % 1000000000u));
}

static int by_tier(const struct report_out *r)
{
	return strcmp(r->by, "tier") == 0;
}

/* The budget of tier `id` over the report's period, when the tier has a daily budget. */
static int tier_budget(const struct report_out *r, const char *id, double *budget)
{
	for (size_t i = 0; i < r->cfg->n_tiers; i++) {
		const struct tier_conf *t = &r->cfg->tiers[i];
		if (strcmp(t->id, id) == 0 && t->daily_budget_usd > 0) {
			*budget = t->daily_budget_usd * r->days;
			return 1;
		}
	}
	return 0;
}

void report_begin(struct report_out *r)
{
	FILE *f = r->f;
	int multi = strcmp(r->from_day, r->to_day) != 0;
	switch (r->format) {
	case REPORT_TEXT:
		fprintf(f, "Spend %s%s%s (UTC) by %s\n", r->from_day, multi ? " to " : "",
			multi ? r->to_day : "", r->by);
		fprintf(f, "%-28s %8s %12s %12s %14s %7s%s\n", r->by, "calls", "input_tok", "output_tok",
			"usd", "errors", by_tier(r) ? " budget_usd   used" : "");
		break;
	case REPORT_JSON:
		fputs("{\n  \"from\": ", f);
		report_json_string(f, r->from_day);
		fputs(",\n  \"to\": ", f);
		report_json_string(f, r->to_day);
		fprintf(f, ",\n  \"days\": %d,\n  \"by\": ", r->days);
		report_json_string(f, r->by);
		fputs(",\n  \"rows\": [", f);
		break;
	case REPORT_CSV:
		report_csv_field(f, r->by);
		fprintf(f, ",calls,input_tokens,output_tokens,usd,errors%s\r\n",
			by_tier(r) ? ",budget_usd,used_percent" : "");
		break;
	}
}

static void add_text(struct report_out *r, const struct report_row *row, int has_budget,
		     double budget, double used)
{
	char cols[48] = "";
	if (has_budget)
		snprintf(cols, sizeof(cols), "%10.2f %6.1f%%", budget, used);
	fprintf(r->f, "%-28s %8lld %12lld %12lld %14.6f %7lld %s\n", row->key, (long long)row->calls,
		(long long)row->input_tokens, (long long)row->output_tokens,
		(double)row->cost_nusd / 1e9, (long long)row->errors, cols);
}

static void add_json(struct report_out *r, const struct report_row *row, int has_budget,
		     double budget, double used)
{
	FILE *f = r->f;
	fputs(r->rows ? ",\n    {" : "\n    {", f);
	report_json_string(f, r->by);
	fputs(": ", f);
	report_json_string(f, row->key);
	fprintf(f, ", \"calls\": %lld, \"input_tokens\": %lld, \"output_tokens\": %lld, \"usd\": ",
		(long long)row->calls, (long long)row->input_tokens, (long long)row->output_tokens);
	put_usd(f, row->cost_nusd);
	fprintf(f, ", \"errors\": %lld", (long long)row->errors);
	if (has_budget)
		fprintf(f, ", \"budget_usd\": %.15g, \"used_percent\": %.4f", budget, used);
	else if (by_tier(r))
		fputs(", \"budget_usd\": null, \"used_percent\": null", f);
	fputc('}', f);
}

static void add_csv(struct report_out *r, const struct report_row *row, int has_budget,
		    double budget, double used)
{
	FILE *f = r->f;
	report_csv_field(f, row->key);
	fprintf(f, ",%lld,%lld,%lld,", (long long)row->calls, (long long)row->input_tokens,
		(long long)row->output_tokens);
	put_usd(f, row->cost_nusd);
	fprintf(f, ",%lld", (long long)row->errors);
	if (has_budget)
		fprintf(f, ",%.15g,%.4f", budget, used);
	else if (by_tier(r))
		fputs(",,", f);
	fputs("\r\n", f);
}

void report_add_row(void *ud, const struct report_row *row)
{
	struct report_out *r = ud;
	double budget = 0, used = 0;
	int has_budget = by_tier(r) && tier_budget(r, row->key, &budget);
	if (has_budget)
		used = 100.0 * ((double)row->cost_nusd / 1e9) / budget;
	switch (r->format) {
	case REPORT_TEXT: add_text(r, row, has_budget, budget, used); break;
	case REPORT_JSON: add_json(r, row, has_budget, budget, used); break;
	case REPORT_CSV: add_csv(r, row, has_budget, budget, used); break;
	}
	r->calls += row->calls;
	r->input_tokens += row->input_tokens;
	r->output_tokens += row->output_tokens;
	r->cost_nusd += row->cost_nusd;
	r->errors += row->errors;
	r->rows++;
}

void report_end(struct report_out *r)
{
	FILE *f = r->f;
	switch (r->format) {
	case REPORT_TEXT:
		fprintf(f, "%-28s %8lld %12s %12s %14.6f\n", "total", (long long)r->calls, "", "",
			(double)r->cost_nusd / 1e9);
		break;
	case REPORT_JSON:
		fprintf(f, "%s,\n  \"total\": {\"calls\": %lld, \"input_tokens\": %lld, "
			"\"output_tokens\": %lld, \"usd\": ", r->rows ? "\n  ]" : "]", (long long)r->calls,
			(long long)r->input_tokens, (long long)r->output_tokens);
		put_usd(f, r->cost_nusd);
		fprintf(f, ", \"errors\": %lld}\n}\n", (long long)r->errors);
		break;
	case REPORT_CSV:
		break;
	}
}
