// Every string the chat page and the admin console show, in English and Simplified Chinese. `t(key, params)` looks one up in the
// chosen language; HTML elements name theirs with data-i18n (text), data-i18n-placeholder, data-i18n-title and
// data-i18n-label (aria-label). The language comes from the switch (kept in localStorage), else the browser.

// The admin console's strings (admin.html, admin.js, admin-integrations.js, admin-compliance.js), merged into the
// catalogues below: one catalogue per language for both pages.
const adminEn = {
  'admin.title': 'Warbler admin console', 'admin.login.title': 'Warbler admin', 'admin.chat': 'Chat',
  'admin.signedInAs': 'signed in as {name}', 'admin.notAdmin': '{name} is not an administrator; ask an admin to promote you',
  'admin.alerts': 'Firing alerts', 'admin.users': 'Users', 'admin.assistant': 'AI assistant', 'admin.bots': 'Bots',
  'admin.webhooks': 'Outgoing webhooks', 'admin.moderation': 'Content moderation', 'admin.compliance': 'Compliance', 'admin.groups': 'Groups',
  'admin.col.id': 'ID', 'admin.col.username': 'Username', 'admin.col.displayName': 'Display name', 'admin.col.role': 'Role',
  'admin.col.status': 'Status', 'admin.col.created': 'Created', 'admin.col.actions': 'Actions', 'admin.col.description': 'Description',
  'admin.col.token': 'Token', 'admin.col.url': 'URL', 'admin.col.events': 'Events', 'admin.col.conversation': 'Conversation',
  'admin.col.owner': 'Owner', 'admin.col.state': 'State', 'admin.col.time': 'Time', 'admin.col.user': 'User',
  'admin.col.wordOrReason': 'Word or reason', 'admin.col.source': 'Source', 'admin.col.name': 'Name', 'admin.col.members': 'Members',
  'admin.col.messages': 'Messages', 'admin.col.assistant': 'AI assistant', 'admin.col.sender': 'Sender', 'admin.col.text': 'Text',
  'admin.col.admin': 'Admin', 'admin.col.action': 'Action', 'admin.col.what': 'What', 'admin.col.results': 'Results',
  'admin.col.sha': 'Archive SHA-256', 'admin.col.delivery': 'Delivery', 'admin.col.event': 'Event', 'admin.col.attempts': 'Attempts',
  'admin.col.lastStatus': 'Last status', 'admin.col.latency': 'Latency',
  'admin.ph.username': 'username', 'admin.ph.displayName': 'display name (optional)', 'admin.ph.password': 'password (8+ characters)',
  'admin.isAdmin': 'admin', 'admin.createUser': 'Create user', 'admin.ph.botUsername': 'bot username',
  'admin.ph.botDescription': 'what it does (optional)', 'admin.createBot': 'Create bot', 'admin.ph.webhookUrl': 'https://… (every event)',
  'admin.ph.conversation': 'conversation id (optional)', 'admin.subscribe': 'Subscribe', 'admin.reloadWords': 'Reload word list',
  'admin.fig.connections': 'Connections', 'admin.fig.messagesLastMinute': 'Messages / minute', 'admin.fig.messages': 'Messages stored',
  'admin.fig.users': 'Users', 'admin.fig.databaseBytes': 'Storage size', 'admin.fig.uptime': 'Uptime · version {version}',
  'admin.health.server': 'server', 'admin.health.storage': 'storage', 'admin.health.statistics': 'statistics',
  'admin.health.serving': 'serving', 'admin.health.notAnswering': 'not answering', 'admin.health.ready': 'ready', 'admin.health.notReady': 'not ready',
  'admin.health.available': 'available', 'admin.health.unavailable': 'unavailable',
  'admin.alerts.off': 'Alerting is not available: {reason}.', 'admin.alerts.notConfigured': 'not configured', 'admin.alerts.none': 'No alerts are firing.',
  'admin.alerts.since': 'since {time}',
  'admin.assistant.status': '@{user} asks {model} at {endpoint} {key}. Use on this server since it started:',
  'admin.assistant.withKey': 'with a key', 'admin.assistant.withoutKey': 'without a key',
  'admin.fig.questions': 'Questions answered', 'admin.fig.failures': 'Failed answers', 'admin.fig.promptTokens': 'Prompt tokens',
  'admin.fig.completionTokens': 'Completion tokens',
  'admin.role.admin': 'admin', 'admin.role.user': 'user', 'admin.status.disabled': 'disabled', 'admin.status.active': 'active',
  'admin.enable': 'Enable', 'admin.disable': 'Disable', 'admin.promote': 'Promote', 'admin.demote': 'Demote', 'admin.resetPassword': 'Reset password',
  'admin.newPasswordFor': 'New password for {name}', 'admin.passwordLabel': 'Password (8+ characters)',
  'admin.turnOff': 'Turn off', 'admin.turnOn': 'Turn on', 'admin.on': 'on', 'admin.off': 'off', 'admin.userN': 'user {id}',
  'admin.moderation.off': 'word list off: set moderation.words_file in the server configuration to turn it on',
  'admin.moderation.on': '{words} words, action {action}', 'admin.moderation.loaded': ', loaded {time}',
  'admin.moderation.webhook': '; moderation webhook {url} (budget {seconds} s, fails {failure})',
  'admin.hide': 'Hide', 'admin.tokenFor': 'Token for {name}', 'admin.newTokenFor': 'New token for {name}',
  'admin.tokenNote': 'Shown this once: store it where the bot runs (Authorization: Bearer …); rotate it here if it leaks.',
  'admin.newTokenNote': 'Shown this once: the old token stops working now. Give it to the bot (Authorization: Bearer …).',
  'admin.secretFor': 'Signing secret for {url}', 'admin.secretNote': 'Shown this once: verify X-Warbler-Signature with it (docs/bots.md has the code).',
  'admin.rotateToken': 'Rotate token', 'admin.revokeTokens': 'Revoke tokens', 'admin.revoked': 'revoked', 'admin.deliveriesTo': 'Deliveries to {url}',
  'admin.redeliver': 'Redeliver', 'admin.all': 'all', 'admin.botN': 'bot {id}', 'admin.ownerAdmin': 'admin', 'admin.deliveries': 'Deliveries',
  'admin.delete': 'Delete',
  'admin.compliance.note': 'Searches and exports here reach every conversation. Each one is recorded, with your name, in the audit trail below.',
  'admin.compliance.key': "Exports are signed with the server's Ed25519 key {fingerprint}; check one with",
  'admin.compliance.q': 'words to find', 'admin.compliance.sender': 'sender username (optional)', 'admin.compliance.from': 'from',
  'admin.compliance.to': 'to', 'admin.compliance.search': 'Search all conversations', 'admin.compliance.more': 'More results',
  'admin.compliance.scopeConv': 'a conversation (id)', 'admin.compliance.scopeUser': "a user's messages (username)",
  'admin.compliance.target': 'conversation id or username', 'admin.compliance.export': 'Export signed archive',
  'admin.compliance.audit': 'Audit trail', 'admin.compliance.none': 'No messages found', 'admin.compliance.one': '1 result',
  'admin.compliance.count': '{n} results', 'admin.compliance.countMore': '{n}+ results', 'admin.compliance.exporting': 'Exporting…',
  'admin.compliance.saved': 'Saved {file} ({bytes} bytes, SHA-256 {sha}, audit entry {id})',
  'admin.compliance.convNeedsId': 'a conversation is named by its id (a number); the Groups table lists them',
  'admin.compliance.action.search': 'search', 'admin.compliance.action.export': 'export', 'admin.compliance.conv': 'conversation {id}',
  'admin.compliance.messagesOf': 'messages of {name}', 'admin.compliance.senderIs': 'sender {name}', 'admin.compliance.nextPage': '(next page)',
};

const adminZh = {
  'admin.title': 'Warbler 管理控制台', 'admin.login.title': 'Warbler 管理', 'admin.chat': '聊天',
  'admin.signedInAs': '已登录：{name}', 'admin.notAdmin': '{name} 不是管理员；请联系管理员为你授权',
  'admin.alerts': '正在触发的告警', 'admin.users': '用户', 'admin.assistant': 'AI 助手', 'admin.bots': '机器人',
  'admin.webhooks': '外发 Webhook', 'admin.moderation': '内容审核', 'admin.compliance': '合规', 'admin.groups': '群组',
  'admin.col.id': 'ID', 'admin.col.username': '用户名', 'admin.col.displayName': '显示名称', 'admin.col.role': '角色',
  'admin.col.status': '状态', 'admin.col.created': '创建时间', 'admin.col.actions': '操作', 'admin.col.description': '说明',
  'admin.col.token': '令牌', 'admin.col.url': 'URL', 'admin.col.events': '事件', 'admin.col.conversation': '会话',
  'admin.col.owner': '所有者', 'admin.col.state': '状态', 'admin.col.time': '时间', 'admin.col.user': '用户',
  'admin.col.wordOrReason': '敏感词或原因', 'admin.col.source': '来源', 'admin.col.name': '名称', 'admin.col.members': '成员数',
  'admin.col.messages': '消息数', 'admin.col.assistant': 'AI 助手', 'admin.col.sender': '发送者', 'admin.col.text': '内容',
  'admin.col.admin': '管理员', 'admin.col.action': '操作', 'admin.col.what': '范围', 'admin.col.results': '结果数',
  'admin.col.sha': '归档 SHA-256', 'admin.col.delivery': '投递', 'admin.col.event': '事件', 'admin.col.attempts': '尝试次数',
  'admin.col.lastStatus': '最近状态', 'admin.col.latency': '延迟',
  'admin.ph.username': '用户名', 'admin.ph.displayName': '显示名称（可选）', 'admin.ph.password': '密码（至少 8 个字符）',
  'admin.isAdmin': '管理员', 'admin.createUser': '创建用户', 'admin.ph.botUsername': '机器人用户名',
  'admin.ph.botDescription': '用途（可选）', 'admin.createBot': '创建机器人', 'admin.ph.webhookUrl': 'https://…（全部事件）',
  'admin.ph.conversation': '会话 ID（可选）', 'admin.subscribe': '订阅', 'admin.reloadWords': '重新加载词表',
  'admin.fig.connections': '连接数', 'admin.fig.messagesLastMinute': '每分钟消息数', 'admin.fig.messages': '已存储消息',
  'admin.fig.users': '用户数', 'admin.fig.databaseBytes': '存储大小', 'admin.fig.uptime': '运行时间 · 版本 {version}',
  'admin.health.server': '服务器', 'admin.health.storage': '存储', 'admin.health.statistics': '统计',
  'admin.health.serving': '服务中', 'admin.health.notAnswering': '无响应', 'admin.health.ready': '就绪', 'admin.health.notReady': '未就绪',
  'admin.health.available': '可用', 'admin.health.unavailable': '不可用',
  'admin.alerts.off': '告警不可用：{reason}。', 'admin.alerts.notConfigured': '未配置', 'admin.alerts.none': '当前没有告警。',
  'admin.alerts.since': '开始于 {time}',
  'admin.assistant.status': '@{user} 通过 {endpoint} 调用 {model}（{key}）。本服务器启动以来的用量：',
  'admin.assistant.withKey': '已配置密钥', 'admin.assistant.withoutKey': '未配置密钥',
  'admin.fig.questions': '已回答问题', 'admin.fig.failures': '失败回答', 'admin.fig.promptTokens': '提示词 token',
  'admin.fig.completionTokens': '生成 token',
  'admin.role.admin': '管理员', 'admin.role.user': '普通用户', 'admin.status.disabled': '已停用', 'admin.status.active': '正常',
  'admin.enable': '启用', 'admin.disable': '停用', 'admin.promote': '设为管理员', 'admin.demote': '取消管理员', 'admin.resetPassword': '重置密码',
  'admin.newPasswordFor': '为 {name} 设置新密码', 'admin.passwordLabel': '密码（至少 8 个字符）',
  'admin.turnOff': '关闭', 'admin.turnOn': '开启', 'admin.on': '开启', 'admin.off': '关闭', 'admin.userN': '用户 {id}',
  'admin.moderation.off': '词表未启用：在服务器配置中设置 moderation.words_file 即可开启',
  'admin.moderation.on': '{words} 个词，处理方式 {action}', 'admin.moderation.loaded': '，加载于 {time}',
  'admin.moderation.webhook': '；审核 Webhook {url}（时限 {seconds} 秒，失败时 {failure}）',
  'admin.hide': '隐藏', 'admin.tokenFor': '{name} 的令牌', 'admin.newTokenFor': '{name} 的新令牌',
  'admin.tokenNote': '仅显示这一次：请保存到机器人运行的地方（Authorization: Bearer …）；如有泄露请在此轮换。',
  'admin.newTokenNote': '仅显示这一次：旧令牌已失效。请把它交给机器人（Authorization: Bearer …）。',
  'admin.secretFor': '{url} 的签名密钥', 'admin.secretNote': '仅显示这一次：用它校验 X-Warbler-Signature（代码见 docs/bots.md）。',
  'admin.rotateToken': '轮换令牌', 'admin.revokeTokens': '吊销令牌', 'admin.revoked': '已吊销', 'admin.deliveriesTo': '发往 {url} 的投递',
  'admin.redeliver': '重新投递', 'admin.all': '全部', 'admin.botN': '机器人 {id}', 'admin.ownerAdmin': '管理员', 'admin.deliveries': '投递记录',
  'admin.delete': '删除',
  'admin.compliance.note': '此处的搜索和导出覆盖所有会话。每一次操作都会连同你的名字记录在下方的审计日志中。',
  'admin.compliance.key': '导出归档由服务器的 Ed25519 密钥 {fingerprint} 签名；校验命令：',
  'admin.compliance.q': '要查找的词', 'admin.compliance.sender': '发送者用户名（可选）', 'admin.compliance.from': '从',
  'admin.compliance.to': '到', 'admin.compliance.search': '搜索所有会话', 'admin.compliance.more': '更多结果',
  'admin.compliance.scopeConv': '一个会话（ID）', 'admin.compliance.scopeUser': '一个用户发送的消息（用户名）',
  'admin.compliance.target': '会话 ID 或用户名', 'admin.compliance.export': '导出签名归档',
  'admin.compliance.audit': '审计日志', 'admin.compliance.none': '没有找到消息', 'admin.compliance.one': '1 条结果',
  'admin.compliance.count': '{n} 条结果', 'admin.compliance.countMore': '{n}+ 条结果', 'admin.compliance.exporting': '正在导出…',
  'admin.compliance.saved': '已保存 {file}（{bytes} 字节，SHA-256 {sha}，审计记录 {id}）',
  'admin.compliance.convNeedsId': '会话请填写其 ID（数字）；群组表中列有各群 ID',
  'admin.compliance.action.search': '搜索', 'admin.compliance.action.export': '导出', 'admin.compliance.conv': '会话 {id}',
  'admin.compliance.messagesOf': '{name} 的消息', 'admin.compliance.senderIs': '发送者 {name}', 'admin.compliance.nextPage': '（下一页）',
};

const catalogues = {
  en: {
    'login.username': 'Username', 'login.password': 'Password', 'login.submit': 'Log in', 'logout': 'Log out',
    'tab.chats': 'Chats', 'tab.contacts': 'Contacts', 'new.chat': 'New chat', 'new.group': 'New group',
    'contacts.placeholder': 'username', 'contacts.add': 'Add contact', 'back': 'Back', 'members': 'Members',
    'empty': 'Pick a conversation, or start a new chat.', 'editing': 'Editing a message', 'replying': 'Replying to',
    'cancel': 'Cancel', 'attach': 'Attach a file', 'composer': 'Message', 'send': 'Send', 'close': 'Close',
    'add': 'Add', 'leave': 'Leave group', 'block': 'Block', 'ok': 'OK', 'language': 'Language',
    'theme': 'Theme', 'theme.system': 'System', 'theme.light': 'Light', 'theme.dark': 'Dark',
    'notify.enable': 'Turn on notifications', 'notify.mention': '{who} mentioned you in {conv}',
    'search.placeholder': 'Search messages', 'search.here': 'This chat', 'search.more': 'More results',
    'search.running': 'Searching…', 'search.none': 'No messages found', 'search.count': '{n} results', 'search.countMore': '{n}+ results',
    'search.one': '1 result', 'search.filters': 'Filters', 'search.sender': 'From', 'search.since': 'Since', 'search.until': 'Until',
    'search.go': 'Search', 'search.noUser': 'no user is named “{name}”',
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
    'error.offlineAttachment': 'attachments need a connection; try again when online',
    'error.login': 'wrong username or password, or the account is disabled',
    'error.network': 'cannot reach the server; check the connection and try again',
    'error.not_logged_in': 'not logged in; log in first',
    'error.unauthorized': 'your login has ended (logged out, password changed or account disabled); log in again',
    'error.not_authenticated': 'the connection was not logged in; reload the page',
    'error.forbidden': 'your role does not allow this', 'error.not_found': 'not found, or you are not a member of that conversation',
    'error.invalid': 'that value is not accepted; check what you entered', 'error.bad_frame': 'the server did not understand the request; reload the page',
    'error.unknown_type': 'the server did not understand the request; reload the page',
    'error.too_large': 'too large: over the server\'s limit for a message or a file', 'error.rate_limited': 'too many at once; wait a moment and try again',
    'error.conflict': 'that conflicts with what is already there (it may exist already)', 'error.group_full': 'the group is full',
    'error.blocked': 'refused: one of you blocked the other, or the text broke the content rules',
    'error.muted': 'you cannot send here now: an admin muted you, or the whole group', 'error.recall_window': 'too late to recall that message',
    'error.registration_closed': 'registration is closed; ask an administrator for an account',
    'error.unavailable': 'the server is busy or unavailable; try again in a moment',
    'error.internal': 'the server failed to do that; try again, or tell an administrator', 'error.http': 'the server answered with an error ({status})',
    'mute.on': 'Mute notifications', 'mute.off': 'Unmute notifications',
    'muted.you': 'An admin muted you in this group', 'muted.youUntil': 'An admin muted you in this group until {until}',
    'muted.group': 'Only the owner and admins can send: the group is muted', 'muted.groupUntil': 'Only the owner and admins can send until {until}',
    'member.mute': 'Mute', 'member.unmute': 'Unmute', 'mute.for': 'For how long', 'mute.1h': '1 hour', 'mute.8h': '8 hours',
    'mute.1d': '1 day', 'mute.1w': '1 week', 'mute.forever': 'until turned off',
    'group.mutedUntil': 'Everyone is muted until {until}', 'group.mutedForever': 'Everyone is muted until turned off', 'member.muted': 'muted', 'member.mutedUntil': 'muted until {until}',
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
    ...adminEn,
  },
  'zh-CN': {
    'login.username': '用户名', 'login.password': '密码', 'login.submit': '登录', 'logout': '退出登录',
    'tab.chats': '会话', 'tab.contacts': '联系人', 'new.chat': '发起聊天', 'new.group': '创建群组',
    'contacts.placeholder': '用户名', 'contacts.add': '添加联系人', 'back': '返回', 'members': '成员',
    'empty': '选择一个会话，或发起新的聊天。', 'editing': '正在编辑消息', 'replying': '回复',
    'cancel': '取消', 'attach': '发送文件', 'composer': '输入消息', 'send': '发送', 'close': '关闭',
    'add': '添加', 'leave': '退出群组', 'block': '屏蔽', 'ok': '确定', 'language': '语言',
    'theme': '主题', 'theme.system': '跟随系统', 'theme.light': '浅色', 'theme.dark': '深色',
    'notify.enable': '开启消息通知', 'notify.mention': '{who} 在「{conv}」中提到了你',
    'search.placeholder': '搜索消息', 'search.here': '仅当前会话', 'search.more': '更多结果',
    'search.running': '正在搜索…', 'search.none': '没有找到消息', 'search.count': '{n} 条结果', 'search.countMore': '{n}+ 条结果',
    'search.one': '1 条结果', 'search.filters': '筛选', 'search.sender': '发送者', 'search.since': '起始日期', 'search.until': '截止日期',
    'search.go': '搜索', 'search.noUser': '没有名为“{name}”的用户',
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
    'error.offlineAttachment': '发送附件需要联网，请在恢复连接后重试',
    'error.login': '用户名或密码错误，或账号已被停用',
    'error.network': '无法连接服务器，请检查网络后重试',
    'error.not_logged_in': '尚未登录，请先登录',
    'error.unauthorized': '登录已失效（已退出、密码已修改或账号已停用），请重新登录',
    'error.not_authenticated': '连接未登录，请刷新页面',
    'error.forbidden': '你的角色无权执行此操作', 'error.not_found': '未找到，或你不是该会话的成员',
    'error.invalid': '输入的内容无效，请检查后重试', 'error.bad_frame': '服务器无法识别此请求，请刷新页面',
    'error.unknown_type': '服务器无法识别此请求，请刷新页面',
    'error.too_large': '内容过大：超出了服务器对消息或文件的限制', 'error.rate_limited': '操作过于频繁，请稍后再试',
    'error.conflict': '与现有内容冲突（可能已经存在）', 'error.group_full': '群成员已满',
    'error.blocked': '已被拒绝：双方存在屏蔽关系，或内容未通过审核',
    'error.muted': '你现在不能在此发言：你已被管理员禁言，或本群正在全员禁言', 'error.recall_window': '已超过可撤回的时间',
    'error.registration_closed': '注册已关闭，请联系管理员开通账号',
    'error.unavailable': '服务器繁忙或暂不可用，请稍后重试',
    'error.internal': '服务器处理失败，请重试或联系管理员', 'error.http': '服务器返回了错误（{status}）',
    'mute.on': '消息免打扰', 'mute.off': '取消免打扰',
    'muted.you': '你已被管理员禁言', 'muted.youUntil': '你已被管理员禁言，{until} 解除',
    'muted.group': '全员禁言中，仅群主和管理员可以发言', 'muted.groupUntil': '全员禁言中，{until} 前仅群主和管理员可以发言',
    'member.mute': '禁言', 'member.unmute': '解除禁言', 'mute.for': '时长', 'mute.1h': '1 小时', 'mute.8h': '8 小时',
    'mute.1d': '1 天', 'mute.1w': '1 周', 'mute.forever': '直到解除',
    'group.mutedUntil': '全员禁言至 {until}', 'group.mutedForever': '全员禁言中，直到解除', 'member.muted': '已禁言', 'member.mutedUntil': '禁言至 {until}',
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
    ...adminZh,
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

/** Whether the catalogues have a string `key`. */
export function has(key) { return key in catalogues.en; }

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
