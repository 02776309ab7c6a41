-- hattrick's own push texts, Turkish (the app's language) and English, in the catalogue `hattrick_messages`
-- (docs/push.md "Messages and languages"). Applied with routines.sql whenever either changes: the built-in rows are
-- replaced as a whole, a deployment's own rows (`builtin = false`) are never touched. `{name}` placeholders are
-- filled per user from the values each push kind carries (domain::messages lists them).
DELETE FROM hattrick_messages WHERE builtin;

INSERT INTO hattrick_messages (kind, locale, builtin, title, body) VALUES
    ('badge_unlock', 'tr', true, 'Yeni Rozet! 🎖️', '{name_tr} rozetini kazandın!'),
    ('badge_unlock', 'en', true, 'New badge! 🎖️', 'You earned the {name_en} badge!'),
    ('level_up', 'tr', true, 'Seviye Atladın! ⬆️', '{name_tr} seviyesine ulaştın! 🎉'),
    ('level_up', 'en', true, 'Level up! ⬆️', 'You reached {name_en}! 🎉'),
    ('referral_tier2', 'tr', true, 'Arkadaşın Giriş Yaptı! 💰', 'Arkadaşın ilk girişini yaptı! {credits} kredi kazandın.'),
    ('referral_tier2', 'en', true, 'Your friend joined! 💰',
     'Your friend signed in for the first time. You earned {credits} credits.'),
    ('welcome_bonus', 'tr', true, 'Hoş Geldin! 🎁', '{credits} kredi hediyemiz seninle!'),
    ('welcome_bonus', 'en', true, 'Welcome! 🎁', 'Here are {credits} credits on us!'),
    ('referral_tier3', 'tr', true, 'Arkadaşın VIP Oldu! 🎉', 'Arkadaşın VIP üye oldu! {credits} kredi + {xp} XP kazandın.'),
    ('referral_tier3', 'en', true, 'Your friend went VIP! 🎉',
     'Your friend became a VIP member. You earned {credits} credits + {xp} XP.'),
    ('welcome_vip', 'tr', true, 'VIP''e Hoş Geldin! 👑', 'VIP ayrıcalıkların açıldı. İyi tahminler!'),
    ('welcome_vip', 'en', true, 'Welcome to VIP! 👑', 'Your VIP perks are unlocked. Good luck with your picks!'),
    ('daily_reward_reminder', 'tr', true, 'Günlük Ödül 🎁',
     'Günlük ödülünü almayı unutma! Bugün {credits} kredi seni bekliyor.'),
    ('daily_reward_reminder', 'en', true, 'Daily reward 🎁',
     'Don''t forget your daily reward! {credits} credits are waiting for you today.'),
    ('streak_warning', 'tr', true, 'Streak Uyarısı 🔥', '{streak} günlük serini kaybetme! Gece yarısına {hours} saat kaldı.'),
    ('streak_warning', 'en', true, 'Streak alert 🔥',
     'Don''t lose your {streak}-day streak! {hours} hours left until midnight.'),
    ('subscription_expiry', 'tr', true, 'VIP Üyelik Uyarısı 👑',
     'VIP üyeliğin {days} gün sonra sona eriyor. Yenilemeyi unutma!'),
    ('subscription_expiry', 'en', true, 'VIP membership alert 👑',
     'Your VIP membership ends in {days} days. Don''t forget to renew!');
