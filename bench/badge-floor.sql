-- The floor of a steady-state badge sweep: the aggregates badge-auto-unlock computes (every condition type of the
-- default badges), run alone. Mirrors stats_sql in crates/jobs/src/badge_auto_unlock.rs.
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON)
SELECT u.id, coalesce(r.n, 0), coalesce(p.correct, 0), coalesce(p.settled, 0), coalesce(c.n, 0), coalesce(c.likes, 0),
       coalesce(x.longest_streak_days, 0), coalesce(hattrick_level_rank(x.level), 1), coalesce(cr.lifetime_earned, 0),
       s.id IS NOT NULL, coalesce(o.owned, '{}')
FROM customer_users u
LEFT JOIN (SELECT referrer_user_id AS id, count(*) AS n FROM referrals WHERE tier >= 2
           GROUP BY referrer_user_id) r ON r.id = u.id
LEFT JOIN (SELECT customer_user_id AS id, count(*) FILTER (WHERE is_correct) AS correct,
                  count(*) FILTER (WHERE is_correct IS NOT NULL) AS settled
           FROM customer_predictions GROUP BY customer_user_id) p ON p.id = u.id
LEFT JOIN (SELECT customer_user_id AS id, count(*) AS n, sum(coalesce(like_count, 0)) AS likes
           FROM match_comments WHERE coalesce(status, 'active') = 'active' AND deleted_at IS NULL
           GROUP BY customer_user_id) c ON c.id = u.id
LEFT JOIN customer_xp x ON x.customer_user_id = u.id
LEFT JOIN customer_credits cr ON cr.customer_user_id = u.id
LEFT JOIN (SELECT DISTINCT customer_user_id AS id FROM customer_subscriptions
           WHERE status NOT IN ('trial', 'trialing') AND coalesce(platform, '') <> 'promo'
             AND started_at IS NOT NULL AND started_at <= now() AND deleted_at IS NULL) s ON s.id = u.id
LEFT JOIN (SELECT customer_user_id AS id, array_agg(badge_id) AS owned FROM customer_badges
           GROUP BY customer_user_id) o ON o.id = u.id
WHERE u.deleted_at IS NULL AND u.is_active IS NOT FALSE;
