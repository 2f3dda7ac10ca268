/* report.h - the spend report of `llm-router report`, written as a text table, JSON or CSV.
 *
 * The rows come from store_report (one per tier, agent, model or day); this module only formats
 * them. Every format carries the same figures: per row the group's key, calls, input and output
 * tokens, cost in USD and errors (status >= 400), and for a report by tier each tier's budget over
 * the period and the share of it used; then the totals.
 *
 *   text  the table for people (the default): a title line, a header, a row per group, a total line.
 *   json  one object: {"from", "to" (first and last UTC day), "days", "by", "rows": [{<by>: key,
 *         "calls", "input_tokens", "output_tokens", "usd", "errors"[, "budget_usd",
 *         "used_percent"]}...], "total": {"calls", "input_tokens", "output_tokens", "usd",
 *         "errors"}}. Counts are integers, usd the exact cost with 9 decimals; budget_usd and
 *         used_percent are null for a tier without a daily budget.
 *   csv   RFC 4180: a header row naming the columns as in JSON (the first is the --by value), then
 *         a row per group; no total row (the rows sum to it). Lines end in CRLF; a field holding a
 *         comma, a double quote, CR or LF is quoted, its quotes doubled.
 */
#ifndef ROUTER_REPORT_H
#define ROUTER_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "store.h"

enum report_format { REPORT_TEXT, REPORT_JSON, REPORT_CSV };

/* "text", "json" or "csv" into *out; returns 0, or -1 for any other name. */
int report_format_parse(const char *name, enum report_format *out);

/* One report being written. The caller sets the first fields (all borrowed; by is "tier",
 * "agent", "model" or "day"; cfg gives the tiers' daily budgets; days is the period's length),
 * zeroes the rest, then calls report_begin, report_add_row for each row (it has the shape of
 * store_report's callback, with the struct as ud) and report_end. Write errors are the stream's:
 * the caller checks ferror(f). */
struct report_out {
	FILE *f;
	enum report_format format;
	const struct config *cfg;
	const char *by;
	const char *from_day, *to_day;  /* "YYYY-MM-DD", UTC, both included */
	int days;
	/* Filled as rows are added. */
	int64_t calls, input_tokens, output_tokens, cost_nusd, errors;
	size_t rows;
};

void report_begin(struct report_out *r);
void report_add_row(void *r, const struct report_row *row);
void report_end(struct report_out *r);

/* Writes s to f as one CSV field (RFC 4180): as it is, or between double quotes with its quotes
 * doubled when it holds a comma, a double quote, CR or LF. */
void report_csv_field(FILE *f, const char *s);
/* Writes s to f as a JSON string, quotes included; bytes that are not valid UTF-8 become '?'. */
void report_json_string(FILE *f, const char *s);

#endif
