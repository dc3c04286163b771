/*
 * list.h - the intrusive doubly linked list every module uses.
 *
 * A struct list is both the head of a list and the link embedded in each
 * element (libuv's queue.h, Linux's list_head): circular, with the head as
 * sentinel, so insert and remove never test for an end and never need the
 * head. A head, and a link that is on no list, point to themselves:
 * list_init both, before use (a zeroed struct list is not valid).
 * list_remove re-initialises the link, so removing twice, or removing an
 * element that never was inserted, is harmless. Header-only; no locking
 * (the owner's lock, if any, covers the list).
 *
 *     struct worker { struct list sessions; };
 *     struct session { struct list link; };
 *     list_init(&w->sessions); list_init(&s->link);
 *     list_insert_head(&w->sessions, &s->link);
 *     list_foreach(it, &w->sessions) {
 *             struct session *s = list_entry(it, struct session, link);
 *             ... (s may be removed here: the next link is read before)
 *     }
 *     list_remove(&s->link);
 */
#ifndef GATEHOUSE_LIST_H
#define GATEHOUSE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
	struct list *next, *prev;
};

/* An empty head, or a link on no list. */
static inline void list_init(struct list *l)
{
	l->next = l;
	l->prev = l;
}

/* head holds no element (or: link l is on no list). */
static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* Link n (on no list) in after `at`, a head or an element. */
static inline void list__insert_after(struct list *at, struct list *n)
{
	n->prev = at;
	n->next = at->next;
	at->next->prev = n;
	at->next = n;
}

/* n becomes the first element of head. */
static inline void list_insert_head(struct list *head, struct list *n)
{
	list__insert_after(head, n);
}

/* n becomes the last element of head. */
static inline void list_insert_tail(struct list *head, struct list *n)
{
	list__insert_after(head->prev, n);
}

/* Unlink n from whatever list holds it (none: nothing happens). */
static inline void list_remove(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

/* Every element of src moves, in order, to the empty list dst; src is
   left empty. */
static inline void list_move_all(struct list *dst, struct list *src)
{
	if (list_empty(src)) {
		list_init(dst);
		return;
	}
	dst->next = src->next;
	dst->prev = src->prev;
	dst->next->prev = dst;
	dst->prev->next = dst;
	list_init(src);
}

/* The first element's link, or NULL when head is empty. */
static inline struct list *list_first(const struct list *head)
{
	return head->next == head ? NULL : head->next;
}

/* The element that embeds link l as its member `member`. */
#define list_entry(l, type, member) ((type *)(void *)((char *)(l) - offsetof(type, member)))

/*
 * Every link of head, first to last, in a new variable `it` (struct list *).
 * The loop body may remove `it` (not other elements).
 */
#define list_foreach(it, head) \
	for (struct list *it = (head)->next, *it##__next = it->next; it != (head); \
	     it = it##__next, it##__next = it->next)

#endif
