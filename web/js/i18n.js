// Every string the chat page shows, in English and Simplified Chinese. `t(key, params)` looks one up in the
// chosen language; HTML elements name theirs with data-i18n (text), data-i18n-placeholder, data-i18n-title and
// data-i18n-label (aria-label). The language comes from the switch (kept in localStorage), else the browser.

const catalogues = {
  en: {
    'login.username': 'Username', 'login.password': 'Password', 'login.submit': 'Log in', 'logout': 'Log out',
    'tab.chats': 'Chats', 'tab.contacts': 'Contacts', 'new.chat': 'New chat', 'new.group': 'New group',
    'contacts.placeholder': 'username', 'contacts.add': 'Add contact', 'back': 'Back', 'members': 'Members',
    'empty': 'Pick a conversation, or start a new chat.', 'editing': 'Editing a message', 'replying': 'Replying to',
    'cancel': 'Cancel', 'attach': 'Attach a file', 'composer': 'Message', 'send': 'Send', 'close': 'Close',
    'add': 'Add', 'leave': 'Leave group', 'block': 'Block', 'ok': 'OK', 'language': 'Language',
    'search.placeholder': 'Search messages', 'search.here': 'This chat', 'search.more': 'More results',
    'search.running': 'Searching…', 'search.none': 'No messages found', 'search.count': '{n} results', 'search.countMore': '{n}+ results',
    'search.one': '1 result',
    'conn.online': 'Online', 'conn.connecting': 'Connecting…', 'conn.offline': 'Offline', 'conn.queued': '{state} · {n} queued',
    'user': 'user {id}', 'group.untitled': 'Group {id}', 'direct': 'Direct chat', 'recalled': 'Message recalled',
    'preview.attachment': 'Attachment: {name}', 'preview.file': 'file', 'preview.custom': '[custom message]', 'preview.draft': 'Draft: {text}',
    'sys.someone': 'someone', 'sys.created': '{by} created the group', 'sys.members_added': '{by} added {names}',
    'sys.member_removed': '{by} removed {names}', 'sys.member_left': '{who} left', 'sys.role_changed': '{by} changed a role',
    'sys.owner_changed': '{by} handed over ownership', 'sys.renamed': '{by} renamed the group', 'sys.dissolved': '{by} dissolved the group',
    'sys.message_pinned': '{by} pinned a message', 'sys.message_unpinned': '{by} unpinned a message', 'sys.update': 'update',
    'status.queued': 'Queued', 'status.sending': 'Sending…', 'status.sent': '✓ Sent', 'status.delivered': '✓✓ Delivered', 'status.read': '✓✓ Read',
    'edited': 'edited', 'assistant.writing': 'writing…', 'act.reply': 'Reply', 'act.react': 'React', 'act.edit': 'Edit', 'act.recall': 'Recall', 'act.pin': 'Pin', 'act.unpin': 'Unpin',
    'download': 'Download {name} ({kib} KiB)', 'quote.earlier': 'Earlier message', 'jump.gone': 'that message is no longer in the history',
    'pin.conv': 'Pin to the top', 'pin.unpin': 'Unpin', 'mentions.unread': 'Unread mentions',
    'members.count': '{n} members', 'more.history': 'Scroll up for older messages',
    'typing.one': '{who} is typing…', 'typing.many': '{who} are typing…',
    'contact.accepted': 'contact', 'contact.incoming': 'wants to be your contact', 'contact.outgoing': 'request sent', 'contact.blocked': 'blocked',
    'contact.accept': 'Accept', 'contact.decline': 'Decline', 'contact.chat': 'Chat', 'contact.remove': 'Remove', 'contact.cancel': 'Cancel',
    'contact.unblock': 'Unblock', 'contact.block': 'Block', 'member.remove': 'Remove', 'member.you': '{name} (you)',
    'role.member': 'member', 'role.admin': 'admin', 'role.owner': 'owner', 'presence.online': 'online', 'presence.offline': 'offline',
    'dialog.newChat': 'New chat', 'dialog.username': 'Username', 'dialog.newGroup': 'New group', 'dialog.groupName': 'Group name',
    'dialog.members': 'Members (usernames, comma-separated)', 'blocked.peer': '{name} is blocked',
    'error.offlineAttachment': 'attachments need a connection; try again when online', 'error.login': 'wrong username or password',
    'mute.on': 'Mute notifications', 'mute.off': 'Unmute notifications',
    'muted.you': 'An admin muted you in this group', 'muted.youUntil': 'An admin muted you in this group until {until}',
    'muted.group': 'Only the owner and admins can send: the group is muted', 'muted.groupUntil': 'Only the owner and admins can send until {until}',
    'member.mute': 'Mute 1 h', 'member.unmute': 'Unmute', 'member.muted': 'muted', 'member.mutedUntil': 'muted until {until}',
    'group.muteAll': 'Mute everyone', 'group.unmuteAll': 'Unmute everyone',
    'act.forward': 'Forward', 'act.unpick': 'Unselect', 'forward.count': '{n} selected to forward', 'forward.go': 'Forward to…',
    'forward.title': 'Forward {n} messages', 'forward.to': 'To', 'forwarded.from': 'Forwarded · {who} · {when}',
    'announcement': 'Announcement', 'announcement.meta': '— {who}, {when}', 'announcement.edit': 'Edit announcement',
    'invite.make': 'Invite link', 'invite.link': 'Invite link', 'invite.hours': 'Hours it works (empty: no end)', 'invite.uses': 'Uses (empty: any number)',
    'invite.approval': 'Joining', 'invite.approval.no': 'joins at once', 'invite.approval.yes': 'needs an admin to accept',
    'invite.join': 'Join “{name}” ({n} members)?', 'invite.ask': 'Ask to join “{name}” ({n} members)? An admin will decide.',
    'invite.requested': 'Your request to join was sent; an admin will decide.', 'invite.requestFrom': '{who} asks to join',
    'sys.member_joined': '{who} joined', 'sys.join_requested': '{who} asked to join',
    'announcement.text': 'Announcement (empty to clear)', 'sys.announcement_set': '{by} posted an announcement', 'sys.announcement_cleared': '{by} cleared the announcement',
    'sys.member_muted': '{by} muted {who}', 'sys.member_muted_until': '{by} muted {who} until {until}', 'sys.member_unmuted': '{by} unmuted {who}',
    'sys.group_muted': '{by} muted the group', 'sys.group_muted_until': '{by} muted the group until {until}', 'sys.group_unmuted': '{by} unmuted the group',
  },
  'zh-CN': {
    'login.username': '用户名', 'login.password': '密码', 'login.submit': '登录', 'logout': '退出登录',
    'tab.chats': '会话', 'tab.contacts': '联系人', 'new.chat': '发起聊天', 'new.group': '创建群组',
    'contacts.placeholder': '用户名', 'contacts.add': '添加联系人', 'back': '返回', 'members': '成员',
    'empty': '选择一个会话，或发起新的聊天。', 'editing': '正在编辑消息', 'replying': '回复',
    'cancel': '取消', 'attach': '发送文件', 'composer': '输入消息', 'send': '发送', 'close': '关闭',
    'add': '添加', 'leave': '退出群组', 'block': '屏蔽', 'ok': '确定', 'language': '语言',
    'search.placeholder': '搜索消息', 'search.here': '仅当前会话', 'search.more': '更多结果',
    'search.running': '正在搜索…', 'search.none': '没有找到消息', 'search.count': '{n} 条结果', 'search.countMore': '{n}+ 条结果',
    'search.one': '1 条结果',
    'conn.online': '在线', 'conn.connecting': '正在连接…', 'conn.offline': '离线', 'conn.queued': '{state} · {n} 条待发送',
    'user': '用户 {id}', 'group.untitled': '群组 {id}', 'direct': '单聊', 'recalled': '消息已撤回',
    'preview.attachment': '附件：{name}', 'preview.file': '文件', 'preview.custom': '[自定义消息]', 'preview.draft': '[草稿] {text}',
    'sys.someone': '有人', 'sys.created': '{by} 创建了群组', 'sys.members_added': '{by} 添加了 {names}',
    'sys.member_removed': '{by} 移除了 {names}', 'sys.member_left': '{who} 退出了群组', 'sys.role_changed': '{by} 修改了成员角色',
    'sys.owner_changed': '{by} 转让了群主', 'sys.renamed': '{by} 修改了群名称', 'sys.dissolved': '{by} 解散了群组',
    'sys.message_pinned': '{by} 置顶了一条消息', 'sys.message_unpinned': '{by} 取消置顶了一条消息', 'sys.update': '更新',
    'status.queued': '排队中', 'status.sending': '发送中…', 'status.sent': '✓ 已发送', 'status.delivered': '✓✓ 已送达', 'status.read': '✓✓ 已读',
    'edited': '已编辑', 'assistant.writing': '正在输入…', 'act.reply': '回复', 'act.react': '表情', 'act.edit': '编辑', 'act.recall': '撤回', 'act.pin': '置顶', 'act.unpin': '取消置顶',
    'download': '下载 {name}（{kib} KiB）', 'quote.earlier': '更早的消息', 'jump.gone': '这条消息已不在历史记录中',
    'pin.conv': '置顶会话', 'pin.unpin': '取消置顶', 'mentions.unread': '未读的 @ 提及',
    'members.count': '{n} 位成员', 'more.history': '向上滚动查看更早的消息',
    'typing.one': '{who} 正在输入…', 'typing.many': '{who} 正在输入…',
    'contact.accepted': '联系人', 'contact.incoming': '请求添加你为联系人', 'contact.outgoing': '已发送请求', 'contact.blocked': '已屏蔽',
    'contact.accept': '接受', 'contact.decline': '拒绝', 'contact.chat': '聊天', 'contact.remove': '删除', 'contact.cancel': '取消',
    'contact.unblock': '取消屏蔽', 'contact.block': '屏蔽', 'member.remove': '移除', 'member.you': '{name}（你）',
    'role.member': '成员', 'role.admin': '管理员', 'role.owner': '群主', 'presence.online': '在线', 'presence.offline': '离线',
    'dialog.newChat': '发起聊天', 'dialog.username': '用户名', 'dialog.newGroup': '创建群组', 'dialog.groupName': '群组名称',
    'dialog.members': '成员（用户名，以逗号分隔）', 'blocked.peer': '已屏蔽 {name}',
    'error.offlineAttachment': '发送附件需要联网，请在恢复连接后重试', 'error.login': '用户名或密码错误',
    'mute.on': '消息免打扰', 'mute.off': '取消免打扰',
    'muted.you': '你已被管理员禁言', 'muted.youUntil': '你已被管理员禁言，{until} 解除',
    'muted.group': '全员禁言中，仅群主和管理员可以发言', 'muted.groupUntil': '全员禁言中，{until} 前仅群主和管理员可以发言',
    'member.mute': '禁言 1 小时', 'member.unmute': '解除禁言', 'member.muted': '已禁言', 'member.mutedUntil': '禁言至 {until}',
    'group.muteAll': '全员禁言', 'group.unmuteAll': '解除全员禁言',
    'act.forward': '转发', 'act.unpick': '取消选择', 'forward.count': '已选择 {n} 条消息', 'forward.go': '转发到…',
    'forward.title': '转发 {n} 条消息', 'forward.to': '转发给', 'forwarded.from': '转发自 {who} · {when}',
    'announcement': '群公告', 'announcement.meta': '— {who}，{when}', 'announcement.edit': '编辑群公告',
    'invite.make': '邀请链接', 'invite.link': '邀请链接', 'invite.hours': '有效小时数（留空：不过期）', 'invite.uses': '可用次数（留空：不限）',
    'invite.approval': '加入方式', 'invite.approval.no': '直接加入', 'invite.approval.yes': '需管理员审核',
    'invite.join': '加入“{name}”（{n} 位成员）？', 'invite.ask': '申请加入“{name}”（{n} 位成员）？需管理员审核。',
    'invite.requested': '已发送入群申请，请等待管理员审核。', 'invite.requestFrom': '{who} 申请入群',
    'sys.member_joined': '{who} 加入了群组', 'sys.join_requested': '{who} 申请加入群组',
    'announcement.text': '群公告（留空则清除）', 'sys.announcement_set': '{by} 发布了群公告', 'sys.announcement_cleared': '{by} 清除了群公告',
    'sys.member_muted': '{by} 禁言了 {who}', 'sys.member_muted_until': '{by} 禁言了 {who}，至 {until}', 'sys.member_unmuted': '{by} 解除了 {who} 的禁言',
    'sys.group_muted': '{by} 开启了全员禁言', 'sys.group_muted_until': '{by} 开启了全员禁言，至 {until}', 'sys.group_unmuted': '{by} 解除了全员禁言',
  },
};

export const languages = [['en', 'English'], ['zh-CN', '简体中文']];

function initial() {
  const saved = localStorage.getItem('warbler.lang');
  if (saved && catalogues[saved]) return saved;
  return (navigator.languages || [navigator.language || 'en']).some((l) => l.toLowerCase().startsWith('zh')) ? 'zh-CN' : 'en';
}

let current = initial();

/** The language in use: 'en' or 'zh-CN' (also the locale for dates and times). */
export function language() { return current; }

/** The string `key` in the current language with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  const s = catalogues[current][key] ?? catalogues.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (params[k] ?? `{${k}}`));
}

/** Switches the language (remembered in this browser) and relabels the page. */
export function setLanguage(lang) {
  if (!catalogues[lang]) return;
  current = lang;
  localStorage.setItem('warbler.lang', lang);
  applyTo(document);
}

/** Fills every data-i18n* element under `root`, and the page's lang attribute. */
export function applyTo(root) {
  document.documentElement.lang = current;
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of root.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
  for (const e of root.querySelectorAll('[data-i18n-title]')) e.title = t(e.dataset.i18nTitle);
  for (const e of root.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
  for (const select of root.querySelectorAll('select.lang-select')) select.value = current;
}

/** Fills a <select class="lang-select"> with the languages; choosing one switches. */
export function wireLanguageSelect(select, onChange) {
  for (const [code, name] of languages) {
    const o = document.createElement('option');
    o.value = code;
    o.textContent = name;
    select.append(o);
  }
  select.value = current;
  select.addEventListener('change', () => { setLanguage(select.value); onChange(); });
}

export const testing = { catalogues };
