/*
 * Linked into the installer's static libarchive in place of archive_write_set_format.o (packaging/build.sh).
 *
 * Every tar writer in libarchive 3.6 calls __archive_write_entry_filetype_unsupported(), which lives in
 * archive_write_set_format.o next to archive_write_set_format(), the by-code lookup table of all 14 writers. Pulling
 * that object in from libarchive.a drags in the xar, 7-Zip, zip, ISO 9660 and mtree writers, and with them libxml2
 * (and ICU), nettle, liblzma and libbz2, none of which a minimal Debian host has or warbler uses. This file provides
 * the one function the tar writer needs, with libarchive's message, and leaves the table out.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>

void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry, const char *format)
{
	const char *name;

	switch (archive_entry_filetype(entry)) {
	case AE_IFCHR: name = "character devices"; break;
	case AE_IFBLK: name = "block devices"; break;
	case AE_IFIFO: name = "named pipes"; break;
	case AE_IFSOCK: name = "sockets"; break;
	default: name = "this file type"; break;
	}
	archive_set_error(a, EINVAL, "%s: %s format cannot archive %s", archive_entry_pathname(entry), format, name);
}
