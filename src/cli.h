/* cli.h - the command-line tool: llm-router --help | --version | check-config FILE. */
#ifndef ROUTER_CLI_H
#define ROUTER_CLI_H

int cli_main(int argc, char **argv);

#endif
