/* version.h - the router's version. */
#ifndef ROUTER_VERSION_H
#define ROUTER_VERSION_H

#define ROUTER_VERSION "0.1.0"

#endif
