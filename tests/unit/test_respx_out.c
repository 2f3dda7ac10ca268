/* test_respx_out.c - the Responses API's response side (respx_out.c): chat.completion -> Response,
 * and chat chunks -> the §4.3 event sequences (exact types, sequence numbers, item ids), with the
 * stored response checked against what the events described. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "respx.h"
#include "util.h"

#define RESP_ID "resp_5f2c"
#define CREATED 1767225600

/* JSON written with ' for " (test readability); aborts the test run on a typo. */
static json_t *J(const char *s)
{
	char *c = xstrdup(s);
	for (char *p = c; *p; p++) {
		if (*p == '\'')
			*p = '"';
	}
	json_error_t je;
	json_t *j = json_loads(c, 0, &je);
	if (!j) {
		fprintf(stderr, "bad test JSON: %s: %s\n", je.text, c);
		abort();
	}
	free(c);
	return j;
}

/* A chat.completion.chunk for choice 0 with delta (JSON, ' for ") and finish_reason (NULL = null). */
static char *chunk(const char *delta, const char *finish)
{
	return xasprintf("{'id':'chatcmpl-1','object':'chat.completion.chunk','created':1,"
			 "'model':'claude-x','choices':[{'index':0,'delta':%s,'finish_reason':%s%s%s}]}",
			 delta, finish ? "'" : "", finish ? finish : "null", finish ? "'" : "");
}

enum ending { END_DONE, END_FAIL, END_NONE };

/* Feeds chunks (NULL-terminated, each a JSON text with ' for ") to a new stream, then ends it as
 * asked; returns every event. The stream is left in *out (free it). */
static json_t *run(const char *body, char *const *chunks, enum ending ending,
		   struct respx_stream **out)
{
	json_t *b = J(body);
	struct respx_stream *s = respx_stream_new(b, RESP_ID, CREATED);
	json_decref(b);
	json_t *events = json_array();
	for (size_t i = 0; chunks[i]; i++) {
		json_t *c = J(chunks[i]);
		respx_stream_chunk(s, c, events);
		json_decref(c);
	}
	if (ending == END_DONE) {
		respx_stream_end(s, events);
	} else if (ending == END_FAIL) {
		struct rerr e;
		rerr_clear(&e);
		rerr_set(&e, 502, "server_error", NULL, NULL, "anthropic: Overloaded");
		respx_stream_fail(s, &e, events);
	}
	*out = s;
	return events;
}

static void free_chunks(char **chunks)
{
	for (size_t i = 0; chunks[i]; i++)
		free(chunks[i]);
}

static const char *type_at(const json_t *events, size_t i)
{
	return json_string_value(json_object_get(json_array_get(events, i), "type"));
}

/* The events have exactly these types (NULL-terminated), numbered 0, 1, ... */
static void check_types(const json_t *events, const char *const *types)
{
	size_t n = 0;
	while (types[n])
		n++;
	CHECK_INT_EQ(json_array_size(events), n);
	for (size_t i = 0; i < n && i < json_array_size(events); i++) {
		test_case("event %zu", i);
		CHECK_STR_EQ(type_at(events, i), types[i]);
		CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(events, i),
								  "sequence_number")), i);
	}
	test_case(NULL);
}

/* The stored response's output is the items the output_item.done events carried, in order, each
 * at the output_index its .added had; the terminal event's response is the stored response. */
static void check_consistent(const json_t *events, const struct respx_stream *s)
{
	json_t *items = json_array();
	size_t added = 0, i;
	json_t *ev;
	json_array_foreach(events, i, ev)
	{
		const char *type = json_string_value(json_object_get(ev, "type"));
		json_int_t at = json_integer_value(json_object_get(ev, "output_index"));
		if (strcmp(type, "response.output_item.added") == 0)
			CHECK_INT_EQ(at, added++);
		if (strcmp(type, "response.output_item.done") == 0) {
			CHECK_INT_EQ(at, json_array_size(items));
			json_array_append(items, json_object_get(ev, "item"));
		}
	}
	CHECK_INT_EQ(added, json_array_size(items));
	json_t *final = respx_stream_response(s);
	CHECK(json_equal(json_object_get(final, "output"), items));
	json_t *last = json_array_get(events, json_array_size(events) - 1);
	CHECK(json_equal(json_object_get(last, "response"), final));
	json_decref(final);
	json_decref(items);
}

static const json_t *ev_at(const json_t *events, size_t i)
{
	return json_array_get(events, i);
}

static const char *str_at(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* ---- non-streaming ---- */

TEST(respx_from_chat_text)
{
	json_t *body = J("{'model':'claude','input':'hi'}");
	json_t *c = J("{'id':'chatcmpl-1','object':'chat.completion','created':1,'model':'claude-x',"
		      "'choices':[{'index':0,'message':{'role':'assistant','content':'Hello.'},"
		      "'finish_reason':'stop'}],'usage':{'prompt_tokens':12,'completion_tokens':3,"
		      "'total_tokens':15}}");
	json_t *r = respx_from_chat(body, c, RESP_ID, CREATED);
	json_t *want = J("{'id':'resp_5f2c','object':'response','created_at':1767225600,"
			 "'status':'completed','completed_at':1767225600,'error':null,"
			 "'incomplete_details':null,'instructions':null,'max_output_tokens':null,"
			 "'model':'claude-x','output':[{'type':'message','id':'msg_5f2c_0',"
			 "'status':'completed','role':'assistant','content':[{'type':'output_text',"
			 "'text':'Hello.','annotations':[],'logprobs':[]}]}],"
			 "'parallel_tool_calls':true,'previous_response_id':null,'reasoning':null,"
			 "'store':true,'temperature':1.0,'text':{'format':{'type':'text'}},"
			 "'tool_choice':'auto','tools':[],'top_p':1.0,'truncation':'disabled',"
			 "'metadata':{},'background':false,'usage':{'input_tokens':12,"
			 "'input_tokens_details':{'cached_tokens':0,'cache_write_tokens':0},"
			 "'output_tokens':3,'output_tokens_details':{'reasoning_tokens':0},"
			 "'total_tokens':15}}");
	CHECK(json_equal(r, want));
	if (!json_equal(r, want)) {
		char *t = json_dumps(r, JSON_COMPACT);
		fprintf(stderr, "got %s\n", t);
		free(t);
	}
	json_decref(want);
	json_decref(r);
	json_decref(c);
	json_decref(body);
}

TEST(respx_from_chat_settings_echoed)
{
	json_t *body = J("{'model':'m','input':'hi','instructions':'Be brief.','tools':[{'type':"
			 "'function','name':'f','parameters':{'type':'object'}},{'type':'function',"
			 "'name':'g','strict':true,'parameters':{}}],'tool_choice':{'type':'required'},"
			 "'parallel_tool_calls':false,'temperature':0.2,'top_p':0.5,'metadata':{'k':'v'},"
			 "'store':false,'previous_response_id':'resp_old','max_output_tokens':64,"
			 "'reasoning':{'effort':'high'},'user':'u1','text':{'verbosity':'low'}}");
	json_t *r = respx_from_chat(body, NULL, RESP_ID, CREATED);
	CHECK_STR_EQ(str_at(r, "instructions"), "Be brief.");
	CHECK_STR_EQ(str_at(r, "model"), "m");
	CHECK_STR_EQ(str_at(r, "tool_choice"), "required");
	CHECK(json_is_false(json_object_get(r, "parallel_tool_calls")));
	CHECK(json_is_false(json_object_get(r, "store")));
	CHECK_DBL_EQ(json_number_value(json_object_get(r, "temperature")), 0.2);
	CHECK_DBL_EQ(json_number_value(json_object_get(r, "top_p")), 0.5);
	CHECK_STR_EQ(str_at(json_object_get(r, "metadata"), "k"), "v");
	CHECK_STR_EQ(str_at(r, "previous_response_id"), "resp_old");
	CHECK_INT_EQ(json_integer_value(json_object_get(r, "max_output_tokens")), 64);
	CHECK_STR_EQ(str_at(json_object_get(r, "reasoning"), "effort"), "high");
	CHECK(json_is_null(json_object_get(json_object_get(r, "reasoning"), "summary")));
	CHECK_STR_EQ(str_at(r, "user"), "u1");
	json_t *text = json_object_get(r, "text");
	CHECK_STR_EQ(str_at(text, "verbosity"), "low");
	CHECK_STR_EQ(str_at(json_object_get(text, "format"), "type"), "text");
	/* FunctionTool requires strict and parameters: an omitted strict echoes as null. */
	json_t *tools = json_object_get(r, "tools");
	CHECK_INT_EQ(json_array_size(tools), 2);
	CHECK(json_is_null(json_object_get(json_array_get(tools, 0), "strict")));
	CHECK(json_is_true(json_object_get(json_array_get(tools, 1), "strict")));
	/* No completion: an empty, completed response with zero usage. */
	CHECK_STR_EQ(str_at(r, "status"), "completed");
	CHECK_INT_EQ(json_array_size(json_object_get(r, "output")), 0);
	CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(r, "usage"), "total_tokens")), 0);
	json_decref(r);
	json_decref(body);
}

TEST(respx_from_chat_parallel_tool_calls)
{
	json_t *body = J("{'model':'m','input':'hi'}");
	json_t *c = J("{'model':'gpt-x','choices':[{'index':0,'message':{'role':'assistant',"
		      "'content':null,'tool_calls':[{'id':'call_A','type':'function','function':"
		      "{'name':'get_weather','arguments':'{}'}},{'id':'call_B','type':'function',"
		      "'function':{'name':'get_time','arguments':'[1]'}}]},'finish_reason':'tool_calls'}],"
		      "'usage':{'prompt_tokens':5,'completion_tokens':7,'total_tokens':12}}");
	json_t *r = respx_from_chat(body, c, RESP_ID, CREATED);
	json_t *want = J("[{'type':'function_call','id':'fc_5f2c_0','call_id':'call_A','name':"
			 "'get_weather','arguments':'{}','status':'completed'},{'type':'function_call',"
			 "'id':'fc_5f2c_1','call_id':'call_B','name':'get_time','arguments':'[1]',"
			 "'status':'completed'}]");
	CHECK(json_equal(json_object_get(r, "output"), want));
	CHECK_STR_EQ(str_at(r, "status"), "completed");
	CHECK(json_is_null(json_object_get(r, "incomplete_details")));
	json_decref(want);
	json_decref(r);
	json_decref(c);
	json_decref(body);
}

TEST(respx_from_chat_reasoning_and_text)
{
	json_t *body = J("{'model':'m','input':'hi'}");
	json_t *c = J("{'model':'deepseek-reasoner','choices':[{'index':0,'message':{'role':"
		      "'assistant','content':'Sunny.','reasoning_content':'Needs weather.'},"
		      "'finish_reason':'stop'}],'usage':{'prompt_tokens':120,'completion_tokens':40,"
		      "'total_tokens':160,'prompt_tokens_details':{'cached_tokens':100},"
		      "'completion_tokens_details':{'reasoning_tokens':12}}}");
	json_t *r = respx_from_chat(body, c, RESP_ID, CREATED);
	json_t *want = J("[{'type':'reasoning','id':'rs_5f2c_0','summary':[{'type':'summary_text',"
			 "'text':'Needs weather.'}]},{'type':'message','id':'msg_5f2c_1','status':"
			 "'completed','role':'assistant','content':[{'type':'output_text','text':"
			 "'Sunny.','annotations':[],'logprobs':[]}]}]");
	CHECK(json_equal(json_object_get(r, "output"), want));
	json_t *usage = J("{'input_tokens':120,'input_tokens_details':{'cached_tokens':100,"
			  "'cache_write_tokens':0},'output_tokens':40,'output_tokens_details':"
			  "{'reasoning_tokens':12},'total_tokens':160}");
	CHECK(json_equal(json_object_get(r, "usage"), usage));
	CHECK_STR_EQ(str_at(r, "model"), "deepseek-reasoner");
	json_decref(usage);
	json_decref(want);
	json_decref(r);
	json_decref(c);
	json_decref(body);
}

TEST(respx_from_chat_incomplete)
{
	static const struct {
		const char *finish, *reason;
	} rows[] = { { "length", "max_output_tokens" }, { "content_filter", "content_filter" } };
	json_t *body = J("{'model':'m','input':'hi'}");
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		test_case("%s", rows[i].finish);
		char *text = xasprintf("{'model':'m','choices':[{'index':0,'message':{'role':"
				       "'assistant','content':'Par','refusal':'No.'},'finish_reason':"
				       "'%s'}]}", rows[i].finish);
		json_t *c = J(text);
		json_t *r = respx_from_chat(body, c, RESP_ID, CREATED);
		CHECK_STR_EQ(str_at(r, "status"), "incomplete");
		CHECK_STR_EQ(str_at(json_object_get(r, "incomplete_details"), "reason"), rows[i].reason);
		CHECK(json_is_null(json_object_get(r, "completed_at")));
		json_t *msg = json_array_get(json_object_get(r, "output"), 0);
		CHECK_STR_EQ(str_at(msg, "status"), "incomplete");
		json_t *parts = json_object_get(msg, "content");
		CHECK_INT_EQ(json_array_size(parts), 2);
		CHECK_STR_EQ(str_at(json_array_get(parts, 1), "type"), "refusal");
		CHECK_STR_EQ(str_at(json_array_get(parts, 1), "refusal"), "No.");
		/* Usage is always complete, zeros when the completion had none. */
		CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(json_object_get(r,
			"usage"), "output_tokens_details"), "reasoning_tokens")), 0);
		json_decref(r);
		json_decref(c);
		free(text);
	}
	test_case(NULL);
	json_decref(body);
}

/* ---- streaming ---- */

TEST(respx_stream_text)
{
	/* §4.3 (a); the first chunk's empty content opens nothing; usage comes on its own chunk. */
	char *chunks[] = { chunk("{'role':'assistant','content':''}", NULL), chunk("{'content':'Hel'}", NULL),
			   chunk("{'content':'lo'}", NULL), chunk("{}", "stop"),
			   xstrdup("{'id':'chatcmpl-1','object':'chat.completion.chunk','created':1,"
				   "'model':'claude-x','choices':[],'usage':{'prompt_tokens':4,"
				   "'completion_tokens':2,'total_tokens':6}}"),
			   NULL };
	struct respx_stream *s;
	json_t *ev = run("{'model':'claude','input':'hi','instructions':'Be brief.'}", chunks,
			 END_DONE, &s);
	static const char *const types[] = {
		"response.created", "response.in_progress", "response.output_item.added",
		"response.content_part.added", "response.output_text.delta",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done",
		"response.output_item.done", "response.completed", NULL
	};
	check_types(ev, types);
	/* created / in_progress: in progress, no output, no usage (ResponseUsage is not nullable). */
	const json_t *created = json_object_get(ev_at(ev, 0), "response");
	CHECK_STR_EQ(str_at(created, "status"), "in_progress");
	CHECK_STR_EQ(str_at(created, "model"), "claude-x");
	CHECK_STR_EQ(str_at(created, "instructions"), "Be brief.");
	CHECK_INT_EQ(json_array_size(json_object_get(created, "output")), 0);
	CHECK_NULL(json_object_get(created, "usage"));
	json_t *want = J("{'type':'message','id':'msg_5f2c_0','status':'in_progress','role':"
			 "'assistant','content':[]}");
	CHECK(json_equal(json_object_get(ev_at(ev, 2), "item"), want));
	json_decref(want);
	want = J("{'type':'response.output_text.delta','sequence_number':4,'item_id':'msg_5f2c_0',"
		 "'output_index':0,'content_index':0,'delta':'Hel','logprobs':[]}");
	CHECK(json_equal(ev_at(ev, 4), want));
	json_decref(want);
	want = J("{'type':'response.content_part.done','sequence_number':7,'item_id':'msg_5f2c_0',"
		 "'output_index':0,'content_index':0,'part':{'type':'output_text','text':'Hello',"
		 "'annotations':[],'logprobs':[]}}");
	CHECK(json_equal(ev_at(ev, 7), want));
	json_decref(want);
	CHECK_STR_EQ(str_at(ev_at(ev, 6), "text"), "Hello");
	CHECK_STR_EQ(str_at(json_object_get(ev_at(ev, 8), "item"), "status"), "completed");
	const json_t *final = json_object_get(ev_at(ev, 9), "response");
	CHECK_STR_EQ(str_at(final, "status"), "completed");
	CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(final, "usage"),
							"total_tokens")), 6);
	check_consistent(ev, s);
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

TEST(respx_stream_two_parallel_calls)
{
	/* §4.3 (b), preceded by text: message at 0, then fc at 1 and 2; usage on the finish chunk. */
	char *chunks[] = {
		chunk("{'role':'assistant','content':''}", NULL),
		chunk("{'content':'Checking.'}", NULL),
		chunk("{'tool_calls':[{'index':0,'id':'call_A','type':'function','function':{'name':"
		      "'get_weather','arguments':''}}]}", NULL),
		chunk("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'city\\':'}}]}", NULL),
		chunk("{'tool_calls':[{'index':0,'function':{'arguments':'\\'Paris\\'}'}}]}", NULL),
		chunk("{'tool_calls':[{'index':1,'id':'call_B','type':'function','function':{'name':"
		      "'get_time','arguments':'{}'}}]}", NULL),
		xstrdup("{'model':'claude-x','choices':[{'index':0,'delta':{},'finish_reason':"
			"'tool_calls'}],'usage':{'prompt_tokens':9,'completion_tokens':8,"
			"'total_tokens':17}}"),
		NULL
	};
	struct respx_stream *s;
	json_t *ev = run("{'model':'claude','input':'hi'}", chunks, END_DONE, &s);
	static const char *const types[] = {
		"response.created", "response.in_progress", "response.output_item.added",
		"response.content_part.added", "response.output_text.delta", "response.output_text.done",
		"response.content_part.done", "response.output_item.done",
		/* fc_5f2c_1 */
		"response.output_item.added", "response.function_call_arguments.delta",
		"response.function_call_arguments.delta", "response.function_call_arguments.done",
		"response.output_item.done",
		/* fc_5f2c_2: buffered while call 0 was open, one delta */
		"response.output_item.added", "response.function_call_arguments.delta",
		"response.function_call_arguments.done", "response.output_item.done",
		"response.completed", NULL
	};
	check_types(ev, types);
	json_t *want = J("{'type':'function_call','id':'fc_5f2c_1','call_id':'call_A','name':"
			 "'get_weather','arguments':'','status':'in_progress'}");
	CHECK(json_equal(json_object_get(ev_at(ev, 8), "item"), want));
	json_decref(want);
	CHECK_INT_EQ(json_integer_value(json_object_get(ev_at(ev, 8), "output_index")), 1);
	CHECK_STR_EQ(str_at(ev_at(ev, 9), "item_id"), "fc_5f2c_1");
	want = J("{'type':'response.function_call_arguments.done','sequence_number':11,'item_id':"
		 "'fc_5f2c_1','output_index':1,'name':'get_weather','arguments':"
		 "'{\\'city\\':\\'Paris\\'}'}");
	CHECK(json_equal(ev_at(ev, 11), want));
	json_decref(want);
	want = J("{'type':'function_call','id':'fc_5f2c_2','call_id':'call_B','name':'get_time',"
		 "'arguments':'{}','status':'completed'}");
	CHECK(json_equal(json_object_get(ev_at(ev, 16), "item"), want));
	json_decref(want);
	CHECK_INT_EQ(json_integer_value(json_object_get(ev_at(ev, 16), "output_index")), 2);
	const json_t *final = json_object_get(ev_at(ev, 17), "response");
	CHECK_STR_EQ(str_at(final, "status"), "completed");
	CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(final, "usage"),
							"input_tokens")), 9);
	check_consistent(ev, s);
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

TEST(respx_stream_interleaved_calls)
{
	/* Fragments of call 1 arrive between those of call 0: call 1 is buffered, nothing is lost. */
	char *chunks[] = {
		chunk("{'tool_calls':[{'index':0,'id':'call_A','function':{'name':'f','arguments':'[1'}},"
		      "{'index':1,'id':'call_B','function':{'name':'g','arguments':'[2'}}]}", NULL),
		chunk("{'tool_calls':[{'index':1,'function':{'arguments':',3]'}}]}", NULL),
		chunk("{'tool_calls':[{'index':0,'function':{'arguments':']'}}]}", NULL),
		chunk("{}", "tool_calls"), NULL
	};
	struct respx_stream *s;
	json_t *ev = run("{'model':'m','input':'hi'}", chunks, END_DONE, &s);
	json_t *final = respx_stream_response(s);
	json_t *want = J("[{'type':'function_call','id':'fc_5f2c_0','call_id':'call_A','name':'f',"
			 "'arguments':'[1]','status':'completed'},{'type':'function_call','id':"
			 "'fc_5f2c_1','call_id':'call_B','name':'g','arguments':'[2,3]','status':"
			 "'completed'}]");
	CHECK(json_equal(json_object_get(final, "output"), want));
	check_consistent(ev, s);
	json_decref(want);
	json_decref(final);
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

TEST(respx_stream_reasoning_then_text)
{
	/* §4.3 (c). */
	char *chunks[] = { chunk("{'role':'assistant','content':''}", NULL),
			   chunk("{'reasoning_content':'Needs '}", NULL),
			   chunk("{'reasoning_content':'weather.'}", NULL),
			   chunk("{'content':'Sunny.'}", "stop"), NULL };
	struct respx_stream *s;
	json_t *ev = run("{'model':'m','input':'hi'}", chunks, END_DONE, &s);
	static const char *const types[] = {
		"response.created", "response.in_progress", "response.output_item.added",
		"response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
		"response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
		"response.reasoning_summary_part.done", "response.output_item.done",
		"response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done",
		"response.output_item.done", "response.completed", NULL
	};
	check_types(ev, types);
	json_t *want = J("{'type':'reasoning','id':'rs_5f2c_0','summary':[]}");
	CHECK(json_equal(json_object_get(ev_at(ev, 2), "item"), want));
	json_decref(want);
	want = J("{'type':'response.reasoning_summary_part.added','sequence_number':3,'item_id':"
		 "'rs_5f2c_0','output_index':0,'summary_index':0,'part':{'type':'summary_text',"
		 "'text':''}}");
	CHECK(json_equal(ev_at(ev, 3), want));
	json_decref(want);
	CHECK_STR_EQ(str_at(ev_at(ev, 6), "text"), "Needs weather.");
	want = J("{'type':'reasoning','id':'rs_5f2c_0','summary':[{'type':'summary_text','text':"
		 "'Needs weather.'}]}");
	CHECK(json_equal(json_object_get(ev_at(ev, 8), "item"), want));
	json_decref(want);
	CHECK_STR_EQ(str_at(json_object_get(ev_at(ev, 9), "item"), "id"), "msg_5f2c_1");
	CHECK_INT_EQ(json_integer_value(json_object_get(ev_at(ev, 11), "output_index")), 1);
	check_consistent(ev, s);
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

TEST(respx_stream_length_is_incomplete)
{
	char *chunks[] = { chunk("{'content':'Par'}", NULL), chunk("{}", "length"), NULL };
	struct respx_stream *s;
	json_t *ev = run("{'model':'m','input':'hi'}", chunks, END_DONE, &s);
	static const char *const types[] = {
		"response.created", "response.in_progress", "response.output_item.added",
		"response.content_part.added", "response.output_text.delta", "response.output_text.done",
		"response.content_part.done", "response.output_item.done", "response.incomplete", NULL
	};
	check_types(ev, types);
	CHECK_STR_EQ(str_at(json_object_get(ev_at(ev, 7), "item"), "status"), "incomplete");
	const json_t *final = json_object_get(ev_at(ev, 8), "response");
	CHECK_STR_EQ(str_at(final, "status"), "incomplete");
	CHECK_STR_EQ(str_at(json_object_get(final, "incomplete_details"), "reason"),
		     "max_output_tokens");
	/* No usage chunk: zeros. */
	CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(final, "usage"),
							"output_tokens")), 0);
	check_consistent(ev, s);
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

TEST(respx_stream_fail_after_text)
{
	/* §4.3 (d): the open message closes as incomplete, then error, then response.failed. */
	char *chunks[] = { chunk("{'role':'assistant','content':''}", NULL),
			   chunk("{'content':'Par'}", NULL), NULL };
	struct respx_stream *s;
	json_t *ev = run("{'model':'m','input':'hi'}", chunks, END_FAIL, &s);
	static const char *const types[] = {
		"response.created", "response.in_progress", "response.output_item.added",
		"response.content_part.added", "response.output_text.delta", "response.output_text.done",
		"response.content_part.done", "response.output_item.done", "error", "response.failed",
		NULL
	};
	check_types(ev, types);
	CHECK_STR_EQ(str_at(json_object_get(ev_at(ev, 7), "item"), "status"), "incomplete");
	json_t *want = J("{'type':'error','sequence_number':8,'code':'server_error','message':"
			 "'anthropic: Overloaded','param':null,'error':{'type':'server_error','code':"
			 "'server_error','message':'anthropic: Overloaded','param':null}}");
	CHECK(json_equal(ev_at(ev, 8), want));
	json_decref(want);
	const json_t *final = json_object_get(ev_at(ev, 9), "response");
	CHECK_STR_EQ(str_at(final, "status"), "failed");
	want = J("{'code':'server_error','message':'anthropic: Overloaded'}");
	CHECK(json_equal(json_object_get(final, "error"), want));
	json_decref(want);
	CHECK(json_is_null(json_object_get(final, "incomplete_details")));
	check_consistent(ev, s);
	/* Nothing after the terminal event. */
	json_t *more = json_array();
	respx_stream_end(s, more);
	json_t *c = J("{'choices':[{'index':0,'delta':{'content':'x'}}]}");
	respx_stream_chunk(s, c, more);
	CHECK_INT_EQ(json_array_size(more), 0);
	json_decref(c);
	json_decref(more);
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

TEST(respx_stream_fail_codes)
{
	/* The error event keeps the error's own code; response.error.code must be one the spec's
	 * ResponseErrorCode knows, else rate_limit_exceeded (429) or server_error. */
	static const struct {
		int status;
		const char *code, *event_code, *failed_code;
	} rows[] = {
		{ 429, NULL, "rate_limit_exceeded", "rate_limit_exceeded" },
		{ 429, "insufficient_quota", "insufficient_quota", "rate_limit_exceeded" },
		{ 500, NULL, "server_error", "server_error" },
		{ 400, "invalid_prompt", "invalid_prompt", "invalid_prompt" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		test_case("%d %s", rows[i].status, rows[i].code ? rows[i].code : "-");
		json_t *body = J("{'model':'m','input':'hi'}");
		struct respx_stream *s = respx_stream_new(body, RESP_ID, CREATED);
		json_t *ev = json_array();
		struct rerr e;
		rerr_clear(&e);
		rerr_set(&e, rows[i].status, "rate_limit_error", rows[i].code, "input", "slow down");
		respx_stream_fail(s, &e, ev);
		/* Failing before any chunk still starts with response.created. */
		static const char *const types[] = { "response.created", "response.in_progress",
						     "error", "response.failed", NULL };
		check_types(ev, types);
		test_case("%d %s", rows[i].status, rows[i].code ? rows[i].code : "-");
		CHECK_STR_EQ(str_at(ev_at(ev, 2), "code"), rows[i].event_code);
		CHECK_STR_EQ(str_at(ev_at(ev, 2), "param"), "input");
		CHECK_STR_EQ(str_at(json_object_get(ev_at(ev, 2), "error"), "type"), "rate_limit_error");
		const json_t *r = json_object_get(ev_at(ev, 3), "response");
		CHECK_STR_EQ(str_at(json_object_get(r, "error"), "code"), rows[i].failed_code);
		json_decref(ev);
		respx_stream_free(s);
		json_decref(body);
	}
	test_case(NULL);
}

TEST(respx_stream_empty)
{
	/* No chunk but [DONE]; and an empty first content delta alone opens no item. */
	char *chunks[] = { chunk("{'role':'assistant','content':''}", NULL), chunk("{}", "stop"), NULL };
	struct respx_stream *s;
	json_t *ev = run("{'model':'m','input':'hi'}", chunks, END_DONE, &s);
	static const char *const types[] = { "response.created", "response.in_progress",
					     "response.completed", NULL };
	check_types(ev, types);
	check_consistent(ev, s);
	json_decref(ev);
	respx_stream_free(s);
	char *none[] = { NULL };
	ev = run("{'model':'m','input':'hi'}", none, END_DONE, &s);
	check_types(ev, types);
	CHECK_STR_EQ(str_at(json_object_get(ev_at(ev, 0), "response"), "model"), "m");
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

TEST(respx_stream_refusal_and_snapshot)
{
	/* A refusal part after text is a second part of the same message; respx_stream_response in
	 * mid-stream shows the open item as it stands. */
	char *chunks[] = { chunk("{'content':'Hm.'}", NULL), chunk("{'refusal':'No.'}", NULL), NULL };
	struct respx_stream *s;
	json_t *ev = run("{'model':'m','input':'hi'}", chunks, END_NONE, &s);
	static const char *const types[] = {
		"response.created", "response.in_progress", "response.output_item.added",
		"response.content_part.added", "response.output_text.delta", "response.output_text.done",
		"response.content_part.done", "response.content_part.added", "response.refusal.delta",
		NULL
	};
	check_types(ev, types);
	CHECK_INT_EQ(json_integer_value(json_object_get(ev_at(ev, 8), "content_index")), 1);
	json_t *now = respx_stream_response(s);
	CHECK_STR_EQ(str_at(now, "status"), "in_progress");
	json_t *want = J("[{'type':'message','id':'msg_5f2c_0','status':'in_progress','role':"
			 "'assistant','content':[{'type':'output_text','text':'Hm.','annotations':[],"
			 "'logprobs':[]},{'type':'refusal','refusal':'No.'}]}]");
	CHECK(json_equal(json_object_get(now, "output"), want));
	json_decref(want);
	json_decref(now);
	json_t *end = json_array();
	respx_stream_end(s, end);
	CHECK_STR_EQ(type_at(end, 0), "response.refusal.done");
	CHECK_STR_EQ(str_at(ev_at(end, 0), "refusal"), "No.");
	CHECK_INT_EQ(json_integer_value(json_object_get(ev_at(end, 0), "sequence_number")), 9);
	json_array_extend(ev, end);
	check_consistent(ev, s);
	json_decref(end);
	json_decref(ev);
	respx_stream_free(s);
	free_chunks(chunks);
}

/* A reply with more tool calls than a stream keeps (128) fails the stream instead of losing the
 * 129th: an error event naming the cause, then response.failed. */
TEST(respx_stream_too_many_calls_fails_instead_of_dropping)
{
	json_t *body = J("{'model':'m','input':'hi'}");
	struct respx_stream *s = respx_stream_new(body, "resp_ab12", 1767225600);
	json_t *events = json_array();
	for (int k = 0; k < 129 && !respx_stream_finished(s); k++) {
		json_t *c = json_pack("{s:[{s:i, s:{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}}]}", "choices", "index", 0,
				      "delta", "tool_calls", "index", k, "id", "call_x", "type", "function",
				      "function", "name", "f", "arguments", "{}");
		respx_stream_chunk(s, c, events);
		json_decref(c);
	}
	CHECK(respx_stream_finished(s));
	const json_t *last = json_array_get(events, json_array_size(events) - 1);
	const json_t *err = json_array_get(events, json_array_size(events) - 2);
	CHECK_STR_EQ(str_at(last, "type"), "response.failed");
	CHECK_STR_EQ(str_at(err, "type"), "error");
	CHECK(strstr(str_at(err, "message"), "more than 128 tool calls") != NULL);
	CHECK_INT_EQ(json_array_size(json_object_get(json_object_get(last, "response"), "output")), 128);
	check_consistent(events, s);
	json_decref(events);
	json_decref(body);
	respx_stream_free(s);
}

/* What a stream keeps for its final response is bounded as a whole, not only item by item: an
 * upstream alternating text and reasoning made one closed item after another, each under the
 * item bound, and the stream kept them all (600 MB for 600 chunks of 1 MiB). Past the bound it
 * fails as the item bound does. */
TEST(respx_stream_keeps_at_most_64_mib_in_all)
{
	json_t *b = J("{'model':'m','input':'hi'}");
	struct respx_stream *s = respx_stream_new(b, RESP_ID, CREATED);
	json_decref(b);
	size_t mib = (size_t)1 << 20;
	char *text = malloc(mib + 1);
	memset(text, 'a', mib);
	text[mib] = '\0';
	json_t *content = json_pack("{s:[{s:i,s:{s:s}}]}", "choices", "index", 0, "delta", "content", text);
	json_t *reasoning = json_pack("{s:[{s:i,s:{s:s}}]}", "choices", "index", 0, "delta",
				      "reasoning_content", text);
	int failed_at = -1;
	for (int i = 0; i < 100 && failed_at < 0; i++) {
		json_t *events = json_array();
		respx_stream_chunk(s, i % 2 ? reasoning : content, events);
		size_t k;
		json_t *ev;
		json_array_foreach(events, k, ev)
			if (strcmp(str_at(ev, "type"), "response.failed") == 0)
				failed_at = i;
		json_decref(events);
	}
	CHECK_INT_EQ(failed_at, 64);
	json_t *final = respx_stream_response(s);
	CHECK_STR_EQ(str_at(final, "status"), "failed");
	CHECK_CONTAINS(str_at(json_object_get(final, "error"), "message"), "64 MiB");
	json_decref(final);
	json_decref(content);
	json_decref(reasoning);
	free(text);
	respx_stream_free(s);
}
